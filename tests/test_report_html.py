"""report.html and the views: fabricated experiments (as in test_report.py) → one self-contained page that headless
Chromium renders with every image loaded and no console message; a study's heatmap and method bars (failed and
missing cells) on a page of their own; views import nothing that trains."""

from __future__ import annotations

import ast
import base64
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from conftest import LABELS, make_competition, toy_frame
from kagglemlc.config import load_config
from kagglemlc.stages.report import report
from kagglemlc.views import html as views_html
from kagglemlc.views.compare import heatmap, method_bars, method_panels
from kagglemlc.views.html import Section, render_html, write_html
from test_report import PNG_MAGIC, another_experiment, fabricate_run, log_public_score

VIEWS = Path(views_html.__file__).parent
PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const loaded = images.filter((img) => img.complete && img.naturalWidth > 0).length;
  document.body.dataset.images = loaded + "/" + images.length;
});
</script>"""
CONSOLE = re.compile(r":CONSOLE[:(]")  # chromium's log line of any console message (errors, uncaught exceptions)


def train_like_history(run: Path, folds: tuple[int, ...], cv: float) -> None:
    """What train writes in each fold's history: metric, metric_at_0.5 and train loss per evaluation."""
    for k in folds:
        path = run / f"fold{k}" / "metrics.json"
        metrics = json.loads(path.read_text())
        steps = range(10, 110, 10)
        metrics["history"] = [
            {"step": s, "metric": cv - 0.3 / s**0.5 + k / 100, "metric_at_0.5": cv - (0.4 + k / 10) / s**0.5}
            | {"train_loss": (1 + k / 5) / s}
            for s in steps
        ]
        metrics["answers"] = {"oof": {"rows": 30, "parse_failures": 1, "unknown_words": 2}}
        path.write_text(json.dumps(metrics))


@pytest.fixture
def runs(tmp_path) -> tuple[Path, Path]:
    """Two experiments: the first fully trained with a zero-shot result and a scored submission, the second with OOF
    and thresholds but no fold metrics."""
    first = make_competition(tmp_path / "comp", train=toy_frame(90))
    second = another_experiment(first, "run2")
    fabricate_run(first, cv=0.71, folds_with_metrics=(0, 1, 2))
    fabricate_run(second, cv=0.64, seed=1, folds_with_metrics=())
    run = load_config(first).run_dir
    train_like_history(run, (0, 1, 2), cv=0.71)
    (run / "zero-shot").mkdir()
    zero = {"metric": 0.31, "rows": 90, "parse_failures": 9, "parse_failure_rate": 0.1, "probability_roc_auc": 0.62}
    (run / "zero-shot" / "metrics.json").write_text(json.dumps(zero))
    (tmp_path / "comp" / "submissions").mkdir()
    log_public_score(first, "run", "0.6543")
    return first, second


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    """Headless Chromium; a test that needs it fails (never skips) when it is not installed."""
    binary = shutil.which("chromium")
    assert binary, "chromium is not on PATH: install Debian's package `chromium` (.ci/run installs it when missing)"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"]
    flags += [f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000"]
    done = subprocess.run([binary, *flags, *args], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def check_in_chromium(page: Path, work: Path) -> Path:
    """Opens the page twice: a 1200×2000 screenshot, and a copy with a probe script whose DOM is dumped; asserts
    every image loaded and no console message. Returns the screenshot."""
    work.mkdir(parents=True, exist_ok=True)
    shot = work / f"{page.stem}.png"
    shown = chromium(f"--screenshot={shot}", "--window-size=1200,2000", page.as_uri(), profile=work / "profile")
    probed = work / f"{page.stem}-probe.html"
    probed.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dumped = chromium("--dump-dom", probed.as_uri(), profile=work / "profile")
    for run in (shown, dumped):
        messages = [line for line in run.stderr.splitlines() if CONSOLE.search(line)]
        assert messages == [], f"console messages from {page.name}: {messages}"
    counted = re.search(r'data-images="(\d+)/(\d+)"', dumped.stdout)
    assert counted, "the probe did not run: " + dumped.stdout[:500]
    loaded, total = map(int, counted.groups())
    expected = page.read_text(encoding="utf-8").count("<img ")
    assert loaded == total == expected > 0, f"{loaded} of {total} images loaded ({expected} in {page.name})"
    return shot


def assert_not_blank(shot: Path) -> None:
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (2000, 1200)
    ink = (pixels < 0.95).any(axis=2).mean()
    colours = len(np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0))
    assert ink > 0.05 and colours > 200, f"screenshot looks blank: {ink:.1%} non-white pixels, {colours} colours"


def inlined_images(text: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([^"]+)"', text)]


def test_report_html_is_one_self_contained_page(runs):
    first, second = runs
    md = report([first, second])
    page = md.with_name("report.html")
    text = page.read_text(encoding="utf-8")
    assert "<script" not in text.lower() and "http://" not in text and "https://" not in text
    links = re.findall(r'\b(?:src|href)="([^"#][^"]*)"', text)  # the contents' "#s1" links stay in the page
    assert links and all(link.startswith("data:image/png;base64,") for link in links)
    images = inlined_images(text)
    # side by side, CV vs public, F1 of both, label frequency; run: P/R/F1, curves, zero-shot; run2: P/R/F1
    assert len(images) == text.count("<img ") == 8
    assert all(png.startswith(PNG_MAGIC) for png in images)
    for name in LABELS:
        assert text.count(f"<td>{name}</td>") == 2  # one per-label table per experiment, as in report.md
    for cv in ("0.6600", "0.7100", "0.6900", "0.5900", "0.6400", "0.6200", "0.6543"):
        assert cv in text
    assert "run: zero-shot vs fine-tuned" in text and "10.0%" in text and "0.6200" in text  # zero-shot's AUC
    assert "Best validation f1_macro per fold" in text and "<code>kagglemlc zero-shot</code>" in text
    assert (md.parent / "report-1-curves.png").read_bytes()[:8] == PNG_MAGIC


def test_html_follows_the_markdown_stem(runs):
    first, _ = runs
    md = report([first], output=first.parent / "out" / "summary.md")
    text = (md.parent / "summary.html").read_text(encoding="utf-8")
    assert "zero-shot vs fine-tuned" in text and "Per-label F1" not in text  # one experiment: no F1 comparison
    assert len(inlined_images(text)) == 5  # CV vs public, label frequency, P/R/F1, curves, zero-shot


def test_report_html_renders_in_headless_chromium(runs, tmp_path):
    first, second = runs
    page = report([first, second]).with_name("report.html")
    assert_not_blank(check_in_chromium(page, tmp_path / "chromium"))


def test_a_study_page_with_failed_and_missing_cells(tmp_path):
    """What sweep/search draw: a faceted heatmap with a failed and an unrun cell, method bars with a failed method."""
    cells = [
        {"data.labels": labels, "data.train_rows": rows, "model.name": model, "tuned": 0.4 + labels / 40 + rows / 8000}
        | {"error": ""}
        for model in ("minilm", "deberta")
        for labels in (2, 4, 8)
        for rows in (800, 1600, 2400)
    ]
    cells[4] |= {"tuned": None, "error": "CUDA out of memory"}
    del cells[-1]  # not run yet
    grid = heatmap(cells, tmp_path / "grid.png", x="data.train_rows", y="data.labels", value="tuned",
                   facet="model.name", title="tuned f1_macro")  # fmt: skip
    methods = [
        {"method": m, "untuned": 0.5 + i / 20, "tuned": 0.55 + i / 20, "trainable_params": 10 ** (3 + i)}
        | {"train_seconds": 30.0 * (i + 1), "peak_gpu_mb": None, "peak_cpu_mb": 900.0 + 100 * i, "error": ""}
        for i, m in enumerate(("head-only", "ia3", "lora", "qlora", "full"))
    ]
    methods[3] = {"method": "qlora", "error": "bitsandbytes needs a GPU"}
    bars = method_bars(methods, tmp_path / "methods.png", method="method", panels=method_panels("f1_macro"))
    page = write_html(
        tmp_path / "study.html",
        "Sweep: labels × rows × model",
        [
            Section("Tuned F1", paragraphs=["One fold per cell."], images=[grid]),
            Section("Methods", images=[bars.read_bytes()], tables=[methods]),
        ],
    )
    assert page == tmp_path / "study.html" and grid.read_bytes()[:8] == bars.read_bytes()[:8] == PNG_MAGIC
    text = page.read_text(encoding="utf-8")
    assert "bitsandbytes needs a GPU" in text and "<td>—</td>" not in text  # missing cells right-aligned "—"
    assert_not_blank(check_in_chromium(page, tmp_path / "chromium"))
    with pytest.raises(ValueError, match="no column 'axis'"):
        heatmap(cells, tmp_path / "bad.png", x="axis", y="data.labels", value="tuned")


def test_html_cells_and_text_are_escaped_and_formatted():
    rows = [{"label": "<b>joy</b>", "n": 12345, "score": 0.712345, "big": 12345.678, "none": None, "nan": np.nan}]
    rows += [{"label": "ok", "n": np.int64(7), "score": np.float32(0.25), "big": 61.5, "none": "", "nan": "text"}]
    text = render_html("a <title>", [Section("x & y", paragraphs=["run `a<b`"], tables=[rows])])
    assert "&lt;b&gt;joy&lt;/b&gt;" in text and "<b>" not in text and "a &lt;title&gt;" in text
    assert "<code>a&lt;b</code>" in text and "x &amp; y" in text
    assert '<td class="num">12,345</td>' in text and '<td class="num">0.7123</td>' in text
    assert '<td class="num">12,345.7</td>' in text and text.count('<td class="num">—</td>') == 2
    assert '<td class="num">7</td>' in text and '<td class="num">0.2500</td>' in text and ">61.5<" in text
    assert "<td></td>" in text and "<td>text</td>" in text
    with pytest.raises(ValueError, match="not a PNG"):
        render_html("t", [Section("s", images=[b"GIF89a"])])


def test_views_import_only_the_layers_below_the_stages_and_no_torch():
    """The layers contract lets views import anything below the stages; the views need core, config, data and
    scoring only (and matplotlib, numpy, pandas): never tasks, engine, models or torch."""
    ours = ("kagglemlc.core", "kagglemlc.config", "kagglemlc.data", "kagglemlc.scoring", "kagglemlc.views")
    theirs = {"matplotlib", "numpy", "pandas", "__future__", *sys.stdlib_module_names}
    found = []
    for path in sorted(VIEWS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
            found += [f"{path.name}: {n}" for n in names if not n.startswith(ours) and n.split(".")[0] not in theirs]
    assert found == []
