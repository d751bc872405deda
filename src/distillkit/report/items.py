"""The per-item browser of a DialogBench evaluation page: every item of items.jsonl, collapsed, filterable.

Each item is a folded <details> whose summary line says its task, id, gold letter and answer; opened, it shows
what the model was asked (the prompt, or the chat messages), its reply and the letter each extractor read from
it (chat), or every option's log-likelihood (base). A small inline script filters the items by task and by
result; the filter also reads the URL fragment (`report.html#task=SF&result=incorrect`), so a filtered view can
be linked. Every piece of text is escaped, and the script reads nothing but the items' data attributes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from distillkit.dialogbench.extract import EXTRACTORS
from distillkit.dialogbench.tasks import all_tasks
from distillkit.report.html import cell, esc

NORMS = ("token", "sum", "char")
RESULTS = ("correct", "incorrect")

SCRIPT = """<script>
(function () {
  var root = document.currentScript.previousElementSibling;
  var selects = Array.prototype.slice.call(root.querySelectorAll("select[data-filter]"));
  var items = Array.prototype.slice.call(root.querySelectorAll("details.item"));
  var count = root.querySelector(".item-count");
  function fromHash() {
    var params = new URLSearchParams(location.hash.slice(1));
    selects.forEach(function (s) {
      var v = params.get(s.dataset.filter) || "";
      s.value = Array.prototype.some.call(s.options, function (o) { return o.value === v; }) ? v : "";
    });
  }
  function apply() {
    var shown = 0;
    items.forEach(function (item) {
      var keep = selects.every(function (s) { return !s.value || item.dataset[s.dataset.filter] === s.value; });
      item.hidden = !keep;
      shown += keep ? 1 : 0;
    });
    count.textContent = shown + " of " + items.length + " items shown";
  }
  function toHash() {
    var params = new URLSearchParams();
    selects.forEach(function (s) { if (s.value) params.set(s.dataset.filter, s.value); });
    var text = params.toString();
    history.replaceState(null, "", text ? "#" + text : location.pathname + location.search);
  }
  selects.forEach(function (s) { s.addEventListener("change", function () { toHash(); apply(); }); });
  window.addEventListener("hashchange", function () { fromHash(); apply(); });
  fromHash();
  apply();
})();
</script>
"""


def read_items(path: Path) -> list[dict]:
    """The records of an item log, one per key (the last one wins), without touching the file; a line cut by a
    kill is left out."""
    records: dict[str, dict] = {}
    for line in Path(path).read_bytes().decode("utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "key" in rec:
            records[rec["key"]] = rec
    return list(records.values())


def answer(rec: dict, headline: str) -> str | None:
    """The letter that scored the item (None: the reply had no letter)."""
    return (rec.get("pred") or {}).get(headline)


def is_correct(rec: dict, headline: str) -> bool:
    return answer(rec, headline) == rec.get("gold")


def _pre(text: Any) -> str:
    return f"<pre>{esc(text)}</pre>\n"


def prompt_html(prompt: Any) -> str:
    """A flat prompt as one block, chat messages as one block per message under its role."""
    if isinstance(prompt, list):
        return "".join(
            f'<div class="msg"><span class="role">{esc(m.get("role", "?"))}</span>{_pre(m.get("content", ""))}</div>'
            for m in prompt
            if isinstance(m, dict)
        )
    return _pre(prompt)


def _mark(letter: str, rec: dict, picked: str | None) -> str:
    marks = [name for name, hit in (("gold", letter == rec.get("gold")), ("picked", letter == picked)) if hit]
    return ", ".join(marks)


def options_html(rec: dict, headline: str) -> str:
    """The options as asked; in base mode with each one's log-likelihood and its normalisations."""
    picked, scores = answer(rec, headline), rec.get("scores")
    if scores:
        head = ["letter", "option", "log-likelihood", "per token", "per character", "tokens", "cut", ""]
    else:
        head = ["letter", "option", ""]
    rows = []
    for letter, text in (rec.get("options") or {}).items():
        cells = [letter, text]
        if scores:
            s = scores.get(letter, {})
            lp, n_tok, n_chr = s.get("logprob"), s.get("n_tokens") or 1, s.get("n_chars") or 1
            per_tok, per_chr = (None, None) if lp is None else (f"{lp / n_tok:.4f}", f"{lp / n_chr:.4f}")
            cells += [None if lp is None else f"{lp:.4f}", per_tok, per_chr, s.get("n_tokens"), s.get("truncated")]
        cells.append(_mark(letter, rec, picked))
        cls = ' class="gold"' if letter == rec.get("gold") else ""
        rows.append(f"<tr{cls}>" + "".join(f"<td>{esc(cell(c))}</td>" for c in cells) + "</tr>")
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    return f'<table class="options"><thead><tr>{th}</tr></thead><tbody>{"".join(rows)}</tbody></table>\n'


def decisions_html(rec: dict, names: tuple[str, ...], headline: str) -> str:
    """One row: the letter each extractor (chat) or normalisation (base) picked; the deciding one marked."""
    pred = rec.get("pred") or {}
    cls = {n: ' class="decides"' if n == headline else "" for n in names}
    th = "".join(f"<th{cls[n]}>{esc(n)}</th>" for n in names)
    td = "".join(f"<td{cls[n]}>{esc(pred.get(n) or 'none')}</td>" for n in names)
    return f'<table class="decisions"><thead><tr>{th}</tr></thead><tbody><tr>{td}</tr></tbody></table>\n'


def item_html(rec: dict, headline: str) -> str:
    """One folded item: a summary line, then the prompt, the reply or the option scores, and the decisions."""
    base = rec.get("mode") == "base"
    ok = is_correct(rec, headline)
    picked = answer(rec, headline) or "no letter"
    rotation = f" (rotation {rec['rotation']})" if rec.get("rotation") else ""
    summary = (
        f'<span class="verdict">{"✓" if ok else "✗"}</span> <b>{esc(rec.get("task"))}</b> '
        f"{esc(rec.get('id'))}{esc(rotation)} · gold {esc(rec.get('gold'))} · answered {esc(picked)} "
        f'<span class="by">({esc(headline)})</span>'
    )
    body = ["<h5>Prompt</h5>\n", prompt_html(rec.get("prompt"))]
    if not base:
        body += ["<h5>Reply</h5>\n", _pre(rec.get("output", ""))]
    body += [f"<h5>Options</h5>\n{options_html(rec, headline)}"]
    what = "normalisation" if base else "extractor"
    body += [
        f"<h5>Letter per {what} (decided by {esc(headline)})</h5>\n",
        decisions_html(rec, NORMS if base else EXTRACTORS, headline),
    ]
    result = RESULTS[0] if ok else RESULTS[1]
    return (
        f'<details class="item {result}" data-task="{esc(rec.get("task"))}" data-result="{result}">'
        f'<summary>{summary}</summary>\n<div class="item-body">{"".join(body)}</div></details>\n'
    )


def _select(name: str, label: str, values: list[str]) -> str:
    opts = "".join(f'<option value="{esc(v)}">{esc(v)}</option>' for v in values)
    return f'<label>{esc(label)} <select data-filter="{name}"><option value="">all</option>{opts}</select></label>\n'


def item_browser_html(records: list[dict], headline: str) -> str:
    """The browser of `records` (items.jsonl), scored by `headline`; empty when there is no record."""
    if not records:
        return ""
    order = {abbr: i for i, abbr in enumerate(all_tasks())}
    records = sorted(records, key=lambda r: order.get(r.get("task"), len(order)))  # stable: file order within a task
    tasks = list(dict.fromkeys(str(r.get("task")) for r in records))
    n_ok = sum(is_correct(r, headline) for r in records)
    return (
        '<div class="item-browser">\n'
        f'<h4 class="table-title">Items ({len(records)}, {n_ok} answered right by {esc(headline)})</h4>\n'
        '<div class="item-filters">\n'
        + _select("task", "task", tasks)
        + _select("result", "result", list(RESULTS))
        + f'<span class="item-count">{len(records)} of {len(records)} items shown</span>\n</div>\n'
        '<div class="item-list">\n' + "".join(item_html(r, headline) for r in records) + "</div>\n</div>\n" + SCRIPT
    )


def run_items_html(folder: Path, headline: str) -> str:
    """The browser of a run folder's items.jsonl (empty without one)."""
    path = Path(folder) / "items.jsonl"
    return item_browser_html(read_items(path), headline) if path.is_file() else ""
