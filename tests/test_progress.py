"""Progress bars and status lines: shown in a terminal, silent in logs and when switched off."""

from __future__ import annotations

import io

from distillkit import progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_status_lines_show_in_a_terminal_only(monkeypatch):
    term, log = Terminal(), io.StringIO()
    monkeypatch.setenv("DISTILLKIT_PROGRESS", "1")
    monkeypatch.setattr("sys.stderr", term)
    progress.status("http://x/v1: try 1 of 6 failed (timed out); retrying in 2 s")
    assert term.getvalue() == "http://x/v1: try 1 of 6 failed (timed out); retrying in 2 s\n"
    monkeypatch.setattr("sys.stderr", log)
    progress.status("not shown in a log")
    monkeypatch.setattr("sys.stderr", term)
    monkeypatch.setenv("DISTILLKIT_PROGRESS", "0")
    progress.status("not shown when switched off")
    assert log.getvalue() == "" and term.getvalue().count("\n") == 1


def test_the_off_switch_disables_every_bar(monkeypatch):
    monkeypatch.setenv("DISTILLKIT_PROGRESS", "0")
    assert progress.progress(range(3), "x").disable
    monkeypatch.setenv("DISTILLKIT_PROGRESS", "1")
    bar = progress.progress(None, "y", total=5)
    assert not bar.disable and bar.total == 5
    bar.close()
