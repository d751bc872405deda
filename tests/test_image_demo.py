"""The APM part of the demo report, on digits with a tiny schedule."""

from __future__ import annotations

from distillkit.demo import run_demo
from distillkit.image import demo

TINY = {
    "data": {"dataset": "digits"},
    "apm": {"ipc": 2, "iterations": 3, "student_epochs": 2, "num_checkpoints": 1},
    "teacher": {"epochs": 5, "net_options": {"width": 16, "depth": 2}},
    "eval": {"runs": 1, "epochs": 5, "net_options": {"width": 16, "depth": 2}},
    "full": {"runs": 1, "epochs": 1},
}


def test_demo_report_shows_grid_table_time_and_memory(tmp_path, monkeypatch):
    real = demo.demo_section
    monkeypatch.setattr(demo, "demo_section", lambda out: real(out, TINY))
    report = run_demo(tmp_path, only=["distillkit.image.demo"])
    text = report.read_text()
    assert "## APM image distillation" in text
    assert "![distilled images, one row per class](apm_mnist/grid.png)" in text
    for row in ("| apm |", "| random |", "| full |"):
        assert row in text
    assert "peak memory" in text and "points" in text
    assert (tmp_path / "apm_mnist" / "grid.png").stat().st_size > 1000
