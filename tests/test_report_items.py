"""The per-item browser of a DialogBench evaluation page: every item of a real run on the 36 sample instances
(chat with a scripted model, base with scripted log-likelihoods), checked in the HTML and, where Chromium is
installed, after its filter script ran (DOM dump and screenshot)."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_report import bands, rows_with, screenshot

from distillkit.dialogbench.evaluate import EvalSettings, evaluate
from distillkit.dialogbench.render import chat_messages
from distillkit.dialogbench.schema import load_sample
from distillkit.lm import LoglikelihoodResult

CHROMIUM = shutil.which("chromium")
RIGHT_GREEN, WRONG_RED = (26, 127, 55), (207, 34, 46)  # the edge of right and wrong items (CSS)
ITEM = re.compile(r'<details class="item (\w+)" data-task="(\w+)" data-result="(\w+)">(.*?)</details>', re.S)


class PolicyChat:
    """Per sample instance, by its position in the file: the gold letter, a wrong letter, or no letter at all
    (a reply with markup in it, which the page must show as text)."""

    def __init__(self):
        self.by_question = {chat_messages(i)[-1]["content"]: (n, i) for n, i in enumerate(load_sample())}

    def reply(self, conv: list[dict]) -> str:
        n, inst = self.by_question[conv[-1]["content"]]
        wrong = next(k for k in inst.options if k != inst.label)
        return [f"{inst.label}", f"The answer is {wrong}.", "<script>alert(1)</script> I cannot tell."][n % 3]

    def chat(self, convs, config, on_result=None):
        outs = [self.reply(c) for c in convs]
        for i, text in enumerate(outs):
            on_result(i, text)
        return outs


class LengthBase:
    """Log-likelihood = -(number of characters) / 7 over 2 tokens: the shortest option wins (per token, in sum)."""

    def loglikelihood_detailed(self, reqs):
        return [LoglikelihoodResult(-len(t) / 7, 2, len(t), False, False) for _, t in reqs]


@pytest.fixture(scope="module")
def chat_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("items") / "chat"
    evaluate(EvalSettings(model="scripted", mode="chat"), out, progress=False, lm=PolicyChat())
    return out


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "items.jsonl").read_text().splitlines()]


def test_chat_page_lists_every_item_with_prompt_reply_and_letters(chat_run):
    page = (chat_run / "report.html").read_text()
    items = ITEM.findall(page)
    recs = records(chat_run)
    assert len(items) == len(recs) == 36
    by_key = {(r["task"], r["id"]): r for r in recs}
    seen = set()
    for cls, task, result, body in items:
        rid = re.search(r"</b> (\S+) · gold", body).group(1)
        rec = by_key[(task, rid)]
        seen.add((task, rid))
        picked = rec["pred"]["lenient"]
        assert cls == result == ("correct" if picked == rec["gold"] else "incorrect")
        assert f"· gold {rec['gold']} · answered {picked or 'no letter'} " in body
        for msg in rec["prompt"]:  # every message, escaped, under its role
            assert f'<span class="role">{msg["role"]}</span><pre>{html.escape(msg["content"])}</pre>' in body
        assert f"<h5>Reply</h5>\n<pre>{html.escape(rec['output'])}</pre>" in body
        decides = {
            n: ' class="decides"' if n == "lenient" else "" for n in ("strict", "lenient", "anchored", "original")
        }
        letters = "".join(f"<td{c}>{rec['pred'][n] or 'none'}</td>" for n, c in decides.items())
        assert letters in body and "(decided by lenient)" in body
        assert f'<tr class="gold"><td>{rec["gold"]}</td>' in body
    assert len(seen) == 36
    # 12 right, 12 wrong, 12 without a letter; the markup in the replies is text, the only script is the filter
    assert [r for _, _, r, _ in items].count("correct") == 12
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and page.count("<script>") == 1
    assert "<summary>" in page and "<details open" not in page  # every item folded
    # the order of the tasks is the paper's, the items of a task in the order they were asked
    assert [t for _, t, _, _ in items][::3] == [
        "SF",
        "IC",
        "KRG",
        "CRG",
        "DI",
        "MRG",
        "PRG",
        "RC",
        "ED",
        "NLI",
        "DS",
        "OD",
    ]


def test_base_page_shows_option_loglikelihoods(tmp_path):
    run = tmp_path / "base"
    evaluate(EvalSettings(model="scripted", mode="base", tasks=["NLI", "DS"]), run, progress=False, lm=LengthBase())
    page = (run / "report.html").read_text()
    items = ITEM.findall(page)
    assert len(items) == 6
    for (_, _, result, body), rec in zip(items, records(run), strict=True):
        assert "<h5>Reply</h5>" not in body and f"<pre>{html.escape(rec['prompt'])}</pre>" in body
        shortest = min(rec["options"], key=lambda k: len(rec["options"][k]))
        assert rec["pred"]["token"] == shortest and result == ("correct" if shortest == rec["gold"] else "incorrect")
        for letter, text in rec["options"].items():
            s = rec["scores"][letter]
            marks = ", ".join(m for m, on in (("gold", letter == rec["gold"]), ("picked", letter == shortest)) if on)
            row = (
                f"<td>{letter}</td><td>{html.escape(text)}</td><td>{s['logprob']:.4f}</td>"
                f"<td>{s['logprob'] / s['n_tokens']:.4f}</td><td>{s['logprob'] / s['n_chars']:.4f}</td>"
                f"<td>{s['n_tokens']}</td><td>no</td><td>{marks}</td>"
            )
            assert row in body
        assert "(decided by token)" in body


def dom(page: Path, fragment: str) -> str:
    """The page's DOM after its script ran, opened at `#fragment`."""
    out = subprocess.run(
        [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--dump-dom", page.resolve().as_uri() + fragment],
        check=True,
        capture_output=True,
        text=True,
        timeout=180,
    )
    return out.stdout


def shown(dumped: str) -> list[tuple[str, str]]:
    """(task, result) of the items the filter left visible."""
    tags = re.findall(r'<details class="item \w+" data-task="(\w+)" data-result="(\w+)"( hidden="")?>', dumped)
    return [(task, result) for task, result, hidden in tags if not hidden]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (`make install` installs the Debian package)")
def test_filters_in_headless_chromium(chat_run, tmp_path):
    page = chat_run / "report.html"
    recs = records(chat_run)
    wrong_sf = sum(r["task"] == "SF" and r["pred"]["lenient"] != r["gold"] for r in recs)
    right = sum(r["pred"]["lenient"] == r["gold"] for r in recs)
    assert 0 < wrong_sf < 3 and 0 < right < 36
    cases = {
        "#task=SF&result=incorrect": (wrong_sf, lambda t, r: t == "SF" and r == "incorrect"),
        "#task=nonsense": (36, None),  # a value the filter does not offer is ignored
    }
    for fragment, (count, rule) in cases.items():
        dumped = dom(page, fragment)
        visible = shown(dumped)
        assert len(visible) == count, fragment
        assert rule is None or all(rule(t, r) for t, r in visible)
        assert f'<span class="item-count">{count} of 36 items shown</span>' in dumped
    # in the picture: one green (right) or red (wrong) edge per item shown, and none of the other colour
    wrong = 36 - right
    for fragment, colour, other, count in (
        ("#result=incorrect", WRONG_RED, RIGHT_GREEN, wrong),
        ("#result=correct", RIGHT_GREEN, WRONG_RED, right),
    ):
        # 3000 px tall: the list (70 % of the window) holds all 24 items
        rgb = screenshot(page, tmp_path / f"{fragment[8:]}.png", 3000, fragment)
        assert len(bands(rows_with(rgb, colour, 4))) == count, fragment
        assert not rows_with(rgb, other, 1).any(), fragment
