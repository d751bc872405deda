"""report.html: a real image run and a folder of runs rendered as one self-contained page, checked in the
HTML and, where Chromium is installed, in a headless-browser screenshot."""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from distillkit.dialogbench.evaluate import EvalSettings, evaluate
from distillkit.dialogbench.report import write_report
from distillkit.errors import UserError
from distillkit.image.pipeline import make_config, run_image
from distillkit.lm import load_local_lm
from distillkit.lm.offline import tiny_llama_folder
from distillkit.report import write_report_html

TINY_IMAGE_RUN = {
    "data": {"dataset": "digits"},
    "apm": {"ipc": 1, "iterations": 3, "student_epochs": 2, "num_checkpoints": 1},
    "teacher": {"epochs": 5, "net_options": {"width": 16, "depth": 2}},
    "eval": {"runs": 1, "epochs": 5, "net_options": {"width": 16, "depth": 2}, "random_draws": 2},
    "full": {"runs": 0},
}
CHROMIUM = shutil.which("chromium")
WARNING_EDGE, HEADER_BG = (212, 167, 44), (240, 243, 246)  # .warning's left border and <th> background (CSS)
BAR_BLUE, BAR_ORANGE = (76, 114, 176), (221, 132, 82)  # the first two bars of the accuracy chart


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> Path:
    """A real quick-preset APM run on digits with a tiny schedule (half a minute): it warns about it."""
    out = tmp_path_factory.mktemp("image_run") / "apm_digits_ipc1"
    run_image(make_config("quick", TINY_IMAGE_RUN), out)
    return out


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def test_image_run_page_holds_tables_warnings_pictures_and_config(image_run):
    page = write_report_html(image_run).read_text()
    m = json.loads((image_run / "metrics.json").read_text())
    assert m["warnings"]  # the tiny schedule is too short, and the run says so
    for w in m["warnings"]:
        assert f'<div class="warning"><strong>warning:</strong> {html.escape(w)}</div>' in page
    for name, r in m["results"].items():  # one table row per method with the run's mean ± std
        assert f"<td>{name}</td><td>{r['n_images']}</td><td>{r['mean']:.2f} ± {r['std']:.2f}</td>" in page
    g = m["gain_over_random"]["apm"]
    assert f"{g['value']:+.2f} ± {g['uncertainty']:.2f}" in page
    for png in ("grid.png", "accuracy.png", "discrepancy.png"):  # every picture inlined, once
        assert page.count(b64(image_run / png)) == 1
    # nothing is fetched from elsewhere: every src/href is a data URI
    assert all(ref.startswith("data:image/png;base64,") for ref in re.findall(r'(?:src|href)="([^"]*)"', page))
    config = json.loads((image_run / "config.json").read_text())
    details = re.search(r"<details><summary>Resolved config \(config.json\)</summary>\n<pre>(.*?)</pre>", page, re.S)
    assert json.loads(html.unescape(details.group(1))) == config
    assert page.index("warning:") < page.index("Test accuracy") < page.index(b64(image_run / "grid.png"))


def bands(mask: np.ndarray) -> list[tuple[int, int]]:
    """Runs of consecutive screenshot rows where `mask` (one bool per row) holds: (first, last)."""
    out, start = [], None
    for y, on in enumerate([*mask, False]):
        if on and start is None:
            start = y
        elif not on and start is not None:
            out.append((start, y - 1))
            start = None
    return out


def rows_with(rgb: np.ndarray, color: tuple[int, int, int], min_pixels: int) -> np.ndarray:
    return (np.abs(rgb - np.array(color)).max(axis=2) <= 2).sum(axis=1) >= min_pixels


def screenshot(page: Path, out: Path, height: int, fragment: str = "") -> np.ndarray:
    """The page in headless Chromium, 1200 px wide, opened at `#fragment` if given, as RGB ints."""
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--hide-scrollbars",
            f"--screenshot={out}",
            f"--window-size=1200,{height}",
            page.resolve().as_uri() + fragment,
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    return np.asarray(Image.open(out).convert("RGB")).astype(int)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (`make install` installs the Debian package)")
def test_image_run_page_in_headless_chromium(image_run, tmp_path):
    m = json.loads((image_run / "metrics.json").read_text())
    # 4000 px tall: the whole page (four warnings, three tables, a 10-row grid, two charts) fits in one shot
    rgb = screenshot(write_report_html(image_run), tmp_path / "shot.png", 4000)
    assert rgb.shape == (4000, 1200, 3)
    content = np.flatnonzero((rgb < 250).any(axis=2).any(axis=1))
    assert 1500 < content.max() < 3900, "the page is blank, cut short, or longer than the screenshot"
    # one amber box per warning, at the top, then the tables (one grey header row each) below them
    warnings = bands(rows_with(rgb, WARNING_EDGE, 4))
    assert len(warnings) == len(m["warnings"])
    headers = [b for b in bands(rows_with(rgb, HEADER_BG, 100)) if b[1] - b[0] >= 15]  # not the <code> strip
    assert len(headers) == 3 and headers[0][0] > warnings[-1][1]
    # the distilled images first: a tall block of rows with pure black pixels (the digits' background)
    black_rows = np.flatnonzero((rgb <= 3).all(axis=2).sum(axis=1) >= 30)
    assert black_rows.min() > headers[-1][1]
    # then the accuracy chart: its blue and orange bars
    for color in (BAR_BLUE, BAR_ORANGE):
        bar = np.argwhere(np.abs(rgb - np.array(color)).max(axis=2) <= 2)
        assert len(bar) > 1000, color
        grid_rows = black_rows[black_rows < bar[:, 0].min()]
        assert len(grid_rows) > 300, "the image grid is missing above the chart"


@pytest.fixture(scope="module")
def folder_of_runs(image_run, tmp_path_factory) -> Path:
    """A demo-like folder: a DialogBench comparison (report.md + charts) above an eval run and an image run."""
    root = tmp_path_factory.mktemp("folder")
    shutil.copytree(image_run, root / "apm_digits_ipc1")
    lm = load_local_lm(str(tiny_llama_folder()), device="cpu")
    settings = EvalSettings(model="tiny", mode="base", tasks=["SF", "NLI"])
    evaluate(settings, root / "dialogbench" / "tiny-base", progress=False, lm=lm)
    write_report([root / "dialogbench" / "tiny-base"], root)  # writes report.md, the charts and report.html
    return root


def test_folder_page_renders_report_md_then_every_run(folder_of_runs):
    root = folder_of_runs
    page = (root / "report.html").read_text()
    # report.md first: its heading is the page title, its tables are tables, its charts are inlined once
    assert "<h1>DialogBench results</h1>" in page and "<title>DialogBench results</title>" in page
    assert "<th>overall_strict</th>" in page
    for png in ("tasks_bar.png", "tasks_radar.png", "letters.png"):
        assert page.count(b64(root / png)) == 1
    # then each run below, with its own tables, its pictures (not shown above) and its config
    assert page.index("<h2>Runs in this folder</h2>") > page.index(b64(root / "letters.png"))
    assert "<h3>APM image distillation run: apm_digits_ipc1</h3>" in page
    assert "<h3>DialogBench evaluation: dialogbench/tiny-base</h3>" in page
    assert page.count(b64(root / "apm_digits_ipc1" / "grid.png")) == 1
    assert page.count("<summary>Resolved config (config.json)</summary>") == 2
    m = json.loads((root / "dialogbench" / "tiny-base" / "metrics.json").read_text())
    for task in ("SF", "NLI"):
        t = m["tasks"][task]
        assert re.search(rf"<td>{task}</td><td>[^<]+</td><td>[a-z]+</td><td>{t['accuracy']:.2f}</td>", page)


def test_text_is_escaped_and_unusable_folders_are_refused(tmp_path):
    (tmp_path / "report.md").write_text("# Run <b>7</b>\n\n<script>alert(1)</script>\n\n| a |\n|---|\n| <i>x</i> |\n")
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "metrics.json").write_text(json.dumps({"loss": 0.5, "warnings": ["<img src=x onerror=1>"]}))
    page = write_report_html(tmp_path).read_text()
    assert "<title>Run &lt;b&gt;7&lt;/b&gt;</title>" in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<td>&lt;i&gt;x&lt;/i&gt;</td>" in page and "&lt;img src=x onerror=1&gt;" in page
    assert "<script" not in page and "<img src=x" not in page
    assert "<td>loss</td><td>0.50</td>" in page  # any other metrics.json: its numbers as a table
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no run"):
        write_report_html(tmp_path / "empty")
    with pytest.raises(UserError, match="is not a folder"):
        write_report_html(tmp_path / "report.md")


def test_distill_report_renders_a_folder_from_the_command_line(tmp_path, capsys):
    from distillkit.cli.common import run_app
    from distillkit.cli.distill import app, register_systems

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"seed": 3}))
    (run / "metrics.json").write_text(json.dumps({"accuracy": 91.25, "warnings": ["teacher hit its epoch cap"]}))
    run_app(app, ["report", str(run)], setup=register_systems)
    page = (run / "report.html").read_text()
    assert "91.25" in page and "teacher hit its epoch cap" in page
    assert str(run / "report.html") in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        run_app(app, ["report", str(tmp_path / "nothing")], setup=register_systems)
    assert e.value.code == 2
