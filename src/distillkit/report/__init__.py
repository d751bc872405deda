"""Reports: every run folder (image, text, DialogBench, the demo) as one self-contained report.html."""

from distillkit.report.page import render_report, write_report_html

__all__ = ["render_report", "write_report_html"]
