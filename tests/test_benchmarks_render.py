"""docs/benchmarks.md cannot drift from the committed JSON its tables are rendered from."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _render_module():
    spec = importlib.util.spec_from_file_location("bench_render", ROOT / "bench" / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_rendered_table_equals_what_its_json_renders():
    render = _render_module()
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    names = [m["name"] for m in render.BLOCK.finditer(text)]
    assert set(names) == set(render.RENDERERS)  # every renderer has its block, every block its renderer
    _, changed = render.render(text)
    assert changed == [], f"run python bench/render.py: {changed} differ from their JSON"


def test_a_changed_number_is_caught():
    render = _render_module()
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    m = next(render.BLOCK.finditer(text))
    body = m["body"]
    digit = next(i for i, ch in enumerate(body) if ch.isdigit())
    tampered = body[:digit] + str((int(body[digit]) + 1) % 10) + body[digit + 1 :]
    _, changed = render.render(text.replace(body, tampered, 1))
    assert changed == [m["name"]]
