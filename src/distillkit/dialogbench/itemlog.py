"""Append-only per-item JSONL log: what makes a killed evaluation resumable without repeats or losses."""

from __future__ import annotations

import json
import os
from pathlib import Path

from distillkit.runs import atomic_path


class ItemLog:
    """One JSON object per evaluated item, keyed by `key`; each write is flushed and fsync'ed."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.records: dict[str, dict] = {}
        if self.path.exists():
            self._load()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = self.path.open("a", encoding="utf-8")

    def _load(self) -> None:
        """Read the records; rewrite the file when a line is cut or the last line lacks its newline."""
        text = self.path.read_bytes().decode("utf-8", errors="replace")  # bytes cut mid-character: a bad line
        good: list[str] = []
        dropped = False
        for line in text.splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill: drop it, the item is redone
                rec = None
            if not isinstance(rec, dict) or "key" not in rec:
                dropped = True
                continue
            self.records[rec["key"]] = rec
            good.append(line)
        if dropped or (text and not text.endswith("\n")):  # else the next record would be glued to the last
            with atomic_path(self.path) as tmp:
                tmp.write_text("".join(g + "\n" for g in good), encoding="utf-8")

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def write(self, record: dict) -> None:
        self._f.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())
        self.records[record["key"]] = record

    def close(self) -> None:
        self._f.close()
