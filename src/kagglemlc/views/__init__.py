"""views: the pictures and the one-file HTML page that reports and studies show — matplotlib figures on the Agg
canvas (no display, no pyplot state) drawn from plain data (dicts, lists, DataFrames), and `html.write_html`.
Below the stages and studies, above nothing that trains: core, config, data and scoring only, never torch.

    compare.py     a metric over a grid of settings (heatmap, faceted), methods side by side (bar panels)
    experiment.py  one or more experiments: learning curves, per-label P/R/F1 and F1, label frequency, CV vs public
    html.py        `write_html(path, title, sections)`: headings, paragraphs, tables and inlined PNGs
    canvas.py      a figure saved as a small PNG, atomically; value labels on bars
    formats.py     short numbers for tables and labels: 0.7123, 1.2M, 2m 03s, 1,500 MB
"""
