"""One self-contained HTML page: a title, a list of contents, then sections of paragraphs, PNG pictures (inlined as
base64 `data:image/png` URIs) and tables. A small inline stylesheet; no JavaScript, no external URL: the file can be
mailed, attached to a ticket or opened offline.

    from kagglemlc.views.html import Section, write_html

    write_html("runs/sweep/sweep.html", "Sweep: labels × rows", [
        Section("Tuned F1", paragraphs=["One fold per cell; `kagglemlc sweep sweep.yaml`."], images=[heatmap_png]),
        Section("Cells", tables=[[{"labels": 2, "rows": 800, "tuned": 0.7123, "error": ""}, ...]]),
    ])

A section shows, in order: its heading, its paragraphs (plain text, escaped; `backticks` become code), its images (a
PNG file's path or PNG bytes), its tables. A table is a list of dict rows: the columns are the keys in order of first
appearance; None and NaN read "—", floats 4 decimals (1 from 10 on), ints with thousands separators, strings as
given (pass strings to choose the format). Cells that read as numbers are right-aligned.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path
from typing import Any

from kagglemlc.core.files import write_text
from kagglemlc.views.formats import MISSING

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NUMERIC = re.compile(r"^(—$|[-+]?\.?\d)")  # "0.71", "1.2M / 22.7M", "2m 03s", "1,500 MB", "—"

STYLE = """
body{font:15px/1.5 "DejaVu Sans","Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1f2328;background:#fff;
 max-width:1180px;margin:0 auto;padding:20px 28px 48px}
h1{font-size:1.65em;margin:.3em 0 .2em}
h2{font-size:1.25em;margin:1.8em 0 .6em;padding-bottom:.25em;border-bottom:1px solid #d0d7de}
nav{font-size:.9em;color:#57606a;margin:.4em 0 1em}
nav a{color:#0969da;text-decoration:none;margin-right:.9em;white-space:nowrap}
p{margin:.4em 0 .7em}
code{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:.88em;background:#f3f4f6;padding:1px 4px;
 border-radius:4px}
figure{margin:.6em 0 1.2em}
img{display:block;max-width:100%;height:auto;border:1px solid #eaeef2}
.table{overflow-x:auto;margin:.6em 0 1.4em}
table{border-collapse:collapse;font-size:13px}
th,td{padding:4px 10px;border-bottom:1px solid #e5e9ed;text-align:left;white-space:nowrap}
th{background:#f3f5f7;font-weight:600;border-bottom:1px solid #c9d1d9}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tbody tr:nth-child(even){background:#fafbfc}
"""


@dataclass(frozen=True)
class Section:
    """One heading of the page and what it shows."""

    heading: str
    paragraphs: Sequence[str] = ()
    """Plain text, one paragraph each; `backticks` become code."""
    images: Sequence[Path | bytes] = ()
    """PNG pictures: a file's path or its bytes, inlined."""
    tables: Sequence[Sequence[Mapping[str, Any]]] = ()
    """Each a list of dict rows (column → value)."""


def _cell(value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, bool) or not isinstance(value, Real):
        return str(value)
    if isinstance(value, Integral):
        return f"{int(value):,}"
    value = float(value)
    if not math.isfinite(value):
        return MISSING
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.4f}"


def _paragraph(text: str) -> str:
    return "<p>" + re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text)) + "</p>"


def _image(image: Path | bytes, alt: str) -> str:
    data = Path(image).read_bytes() if isinstance(image, str | Path) else bytes(image)
    if not data.startswith(PNG_MAGIC):
        raise ValueError(f"{alt}: not a PNG image")
    encoded = base64.b64encode(data).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}"></figure>'


def _table(rows: Sequence[Mapping[str, Any]]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for column in columns:
            text = _cell(row.get(column))
            numeric = ' class="num"' if NUMERIC.match(text) else ""
            cells.append(f"<td{numeric}>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="table"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def render_html(title: str, sections: Sequence[Section]) -> str:
    """The page as text (what `write_html` writes)."""
    contents = "".join(f'<a href="#s{i}">{html.escape(s.heading)}</a>' for i, s in enumerate(sections, 1))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<nav>{contents}</nav>" if len(sections) > 1 else "",
    ]
    for i, section in enumerate(sections, 1):
        parts.append(f'<section id="s{i}"><h2>{html.escape(section.heading)}</h2>')
        parts += [_paragraph(p) for p in section.paragraphs]
        parts += [_image(image, section.heading) for image in section.images]
        parts += [_table(rows) for rows in section.tables if rows]
        parts.append("</section>")
    parts.append("</body></html>\n")
    return "\n".join(part for part in parts if part)


def write_html(path: str | Path, title: str, sections: Sequence[Section]) -> Path:
    """Writes the page (atomically) and returns its path.

    Args:
        path: the .html file to write.
        title: the page's title and top heading.
        sections: what the page shows, in order.

    Raises:
        ValueError: an image that is not a PNG.
        OSError: an image path that cannot be read.
    """
    return write_text(path, render_html(title, sections))
