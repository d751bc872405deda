"""The APM part of the demo report, on digits with a tiny schedule: the numbers shown are the run's numbers."""

from __future__ import annotations

import base64
import html
import json

from distillkit.demo import run_demo
from distillkit.image import demo

TINY = {
    "apm": {"iterations": 3, "student_epochs": 2, "num_checkpoints": 1},
    "teacher": {"epochs": 5, "net_options": {"width": 16, "depth": 2}},
    "eval": {"runs": 1, "epochs": 5, "net_options": {"width": 16, "depth": 2}, "random_draws": 2},
    "full": {"runs": 1, "epochs": 2},
}


def test_demo_report_shows_each_ipc_with_the_runs_numbers(tmp_path, monkeypatch):
    real = demo.demo_section
    monkeypatch.setattr(demo, "demo_section", lambda out: real(out, TINY, full=True))
    text = run_demo(tmp_path, only=["distillkit.image.demo"]).read_text()
    page = (tmp_path / "report.html").read_text()  # the same report as one self-contained page
    assert "## APM image distillation" in text and "<h2>APM image distillation</h2>" in page
    for ipc in demo.FULL_IPCS:
        name = f"apm_digits_ipc{ipc}"
        m = json.loads((tmp_path / name / "metrics.json").read_text())
        assert m["ipc"] == ipc and m["results"]["apm"]["n_images"] == 10 * ipc
        assert f"![distilled images, one row per class]({name}/grid.png)" in text
        assert (tmp_path / name / "grid.png").stat().st_size > 1000
        for row, r in m["results"].items():  # every table row is the run's mean ± std
            assert f"| {row} | {r['n_images']} | {r['mean']:.2f} ± {r['std']:.2f} |" in text
        for key in ("apm", "apm_hard"):
            g = m["gain_over_random"][key]
            assert f"**{g['value']:+.2f} ± {g['uncertainty']:.2f} points**" in text
        # the random baseline is averaged over the configured draws, with its spread over them
        assert len(m["results"]["random"]["draw_means"]) == 2 and m["results"]["random"]["std_over"] == "draws"
        for w in m["warnings"]:
            assert f"> warning: {w}" in text
            assert f"<blockquote>\n<p>warning: {w}</p>" in html.unescape(page)  # highlighted as a block
        # in the page: the grid inlined once, and a section with the run's own table and config
        assert page.count(base64.b64encode((tmp_path / name / "grid.png").read_bytes()).decode()) == 1
        section = page.split(f"<h3>APM image distillation run: {name}</h3>", 1)[1].split("</section>", 1)[0]
        r = m["results"]["apm"]
        assert f"<td>apm</td><td>{r['n_images']}</td><td>{r['mean']:.2f} ± {r['std']:.2f}</td>" in section
        assert "<summary>Resolved config (config.json)</summary>" in section
    # one teacher pool serves every IPC; the full-data reference is computed once and reported
    first = json.loads((tmp_path / "apm_digits_ipc1" / "metrics.json").read_text())
    assert "full" in first["results"] and not (tmp_path / "apm_digits_ipc10" / "teachers").exists()
    full = first["results"]["full"]
    assert f"{full['mean']:.2f} ± {full['std']:.2f} %" in text
    # a 2-epoch cap stops the full-data reference while it still improves: the report must say so
    assert full["converged"] is False and any("full-data reference" in w for w in first["warnings"])


def test_make_demo_shows_ipc_10_with_soft_labels_only(tmp_path):
    text = demo.demo_section(tmp_path, TINY)
    m = json.loads((tmp_path / "apm_digits_ipc10" / "metrics.json").read_text())
    assert demo.DEMO_IPCS == (10,) and set(m["results"]) == {"apm", "random", "full"}
    g = m["gain_over_random"]["apm"]
    assert f"teacher soft labels (L1): **{g['value']:+.2f} ± {g['uncertainty']:.2f} points**" in text
    assert "hard labels (CE)" not in text and not (tmp_path / "apm_digits_ipc1").exists()
