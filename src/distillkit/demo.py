"""`make demo`: each system's quick job on embedded data, gathered into one readable report."""

from __future__ import annotations

import importlib
import time
from pathlib import Path

from distillkit.report import write_report_html

# Each system contributes `demo_section(out_dir: Path) -> str` (markdown, paths relative to the report);
# a section with a longer showcase also takes `full=True` (`distill demo --full`, `make demo-full`).
SECTIONS = [
    ("APM image distillation", "distillkit.image.demo", True),
    ("DiLM text distillation", "distillkit.text.demo", False),
    ("DialogBench", "distillkit.dialogbench.demo", False),
]


def run_demo(out: Path, only: list[str] | None = None, full: bool = False) -> Path:
    """Run the demo sections (all, or the modules named in `only`) and write `out/report.md` and `report.html`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    parts = ["# distillkit demo report", ""]
    for title, module, has_full in SECTIONS:
        if only and module not in only:
            continue
        start = time.perf_counter()
        try:
            section = importlib.import_module(module).demo_section(out, **({"full": True} if full and has_full else {}))
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        parts += [f"## {title}", "", section, "", f"_section time: {time.perf_counter() - start:.0f} s_", ""]
        _write(out, parts)  # after each section, so a long demo can be read while it runs
    return _write(out, parts)


def _write(out: Path, parts: list[str]) -> Path:
    """report.md and its self-contained HTML page, report.html; returns report.md."""
    report = out / "report.md"
    report.write_text("\n".join(parts))
    write_report_html(out)
    return report
