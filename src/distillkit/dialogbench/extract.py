"""Answer extraction from chat-model outputs (English and Chinese).

Three extractors, all reported (spec section 2.5 / quirk 2):
- strict:   the response starts with the letter ("B", "B.", "(B) ...").
- lenient:  strict, else explicit answer phrasings, else weaker cues, else a unique quoted option text.
            Keeps the original cascade's coverage, but letters must stand alone ("This Dialogue" is not D,
            "Plan B." is not an answer at line end), negated mentions ("not A") are skipped, and two different
            letters at the same level of evidence give None instead of a guess.
- anchored: strict, or an explicit answer statement on the first or last line.
The original DialogBench cascade is reproduced as `original_en` / `original_zh` for comparison.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

LETTERS = "ABCD"


@dataclass(frozen=True)
class Extraction:
    """Letters found by each extractor (None: no answer found)."""

    strict: str | None
    lenient: str | None
    anchored: str | None
    original: str | None

    def get(self, name: str) -> str | None:
        return getattr(self, name)


EXTRACTORS = ("strict", "lenient", "anchored", "original")


# ------------------------------------------------------------------------------------------ original cascade
_ORIG_EN = [
    r"is option ([ABCD])",
    r"answer: ?([ABCD])",
    r"is:\n\n?([ABCD])",
    r"is ?([ABCD])",
    r"is ([ABCD])",
    r"so, choose: ?([ABCD])",
    r"choose ([ABCD])",
    r"([ABCD])\.",
    r"would be ([ABCD])",
    r"be ([ABCD])",
    r"option ([ABCD])",
    r"Option ([ABCD])",
    r"Option ([ABCD])",
    r"【Candidate options】([ABCD])",
    r"\[([ABCD])\]",
    r"\(([ABCD])\)",
    r"\{([ABCD])\}",
    r"is ?\(([ABCD])\)",
    r"is \(([ABCD])\)",
]


def original_en(response: str) -> tuple[str | None, str | None]:
    """The reference English cascade, pattern for pattern: (strict, lenient)."""
    response = str(response)
    m = re.search(r"^\s*[ABCD](?![a-zA-Z])", response)
    if m:
        return m.group(0).strip(), m.group(0).strip()
    for pattern in _ORIG_EN:
        m = re.search(pattern, response, re.M)
        if m:
            return None, m.group(1)
    return None, None


_ORIG_ZH_SINGLE = [
    (r"答案(选项)?(是|为)：? ?([ABCD])", 3),
    (r"答案(是|为)选项 ?([ABCD])", 2),
    (r"故?选择?：? ?([ABCD])", 1),
    (r"([ABCD]) ?选?项(是|为)?正确", 1),
    (r"正确的?选项(是|为) ?([ABCD])", 2),
    (r"答案(应该)?(是|为)([ABCD])", 3),
    (r"选项 ?([ABCD]) ?(是|为)?正确", 1),
    (r"选择答案 ?([ABCD])", 1),
    (r"答案?：?([ABCD])", 1),
    (r"([ABCD])(选?项)?是?符合题意", 1),
    (r"答案选项：? ?([ABCD])", 1),
    (r"答案(选项)?为(.*?)([ABCD])", 3),
]
_ORIG_ZH_RECURSIVE = [(r"([ABCD])(.*?)当选", 1), (r"([ABCD])(.*?)正确", 1)]


def original_zh(response: str) -> tuple[str | None, str | None]:
    """The reference Chinese cascade (CMMLU-derived), pattern for pattern: (strict, lenient)."""
    response = str(response).strip()
    if not response:
        return None, None
    if response[0] in LETTERS:
        return response[0], response[0]
    for pattern, idx in _ORIG_ZH_SINGLE:
        m = re.search(pattern, response, re.M)
        if m:
            return None, m.group(idx)
    for pattern, idx in _ORIG_ZH_RECURSIVE:
        m = re.search(pattern, response, re.M)
        if m:
            answer = m.group(idx)
            while m:
                answer = m.group(idx)
                m = re.search(pattern, m.group(0)[1:], re.M)
            return None, answer
    m = re.search(r"[^不]是：? ?([ABCD])", response, re.M)
    if m:
        return None, m.group(1)
    m = re.match(r"^[^ABCD]*([ABCD])[^ABCD]*$", response)
    if m:
        return None, m.group(1)
    return None, None


# ------------------------------------------------------------------------------------------ fixed English
_L = r"[\(\[\{]?\**([A-D])\**[\)\]\}]?(?![A-Za-z0-9'’])"  # a letter standing alone, maybe (B) / **B**
_NEG = re.compile(r"(?:\bnot|n't|n’t|\bnever|\bisn't|\brather than|\binstead of|\bexcept)\s*(?:\S+\s*){0,2}$", re.I)
_ARTICLE_OK = {"is", "was", "seems", "would", "fits", "matches", "because", "since", "as", "and"}

_EN_STRONG = [
    r"\b(?:answer|choice|option|reply|response|pick)\b[^.\n]{0,25}?(?:\bis\b|\bwould be\b|\bshould be\b|\bmust be\b"
    r"|\bwill be\b|=|:|\s[-–]\s)\s*:?\s*(?:option\s+|choice\s+|letter\s+)?" + _L,
    r"\b(?:i(?:'d| would| will)?\s+)?(?:choose|select|pick|go with|suggests?|indicates?|points to)\s*:?\s*"
    r"(?:option\s+|choice\s+|answer\s+)?" + _L,
    r"(?:^|[\s(])([A-D])\s+(?:fits|matches|works|answers)\s+(?:the\s+)?(?:best|most)",
    r"\b(?:option|choice|answer)\s+" + _L + r"\s+(?:is|seems|would be|appears)\s+(?:to be\s+)?(?:the\s+)?"
    r"(?:correct|right|best|most)",
    r"(?:^|[\s(])([A-D])\s+is\s+(?:the\s+)?(?:correct|right|best|most appropriate)",
    r"【Candidate options】\s*" + _L,
]
_EN_MEDIUM = [
    r"\bis\s*:?\s*\n*\s*(?:option\s+)?" + _L,
    r"\b(?:would|should|must|will) be\s+(?:option\s+)?" + _L,
    r"\b(?:it's|it is|that's|that is|it’s)\s+(?:option\s+)?" + _L,
    r"\b(?:so|thus|therefore|hence|definitely|probably|clearly|correct:)\s*,?\s+(?:option\s+)?" + _L,
]
_EN_WEAK = [r"\b(?:[Oo]ption|[Cc]hoice)\s+" + _L, r"[\[\(\{]([A-D])[\]\)\}]", r"(?:^|\n)\s*\**([A-D])\**[.):]"]


def is_option_listing(text: str) -> bool:
    """True when the output repeats the candidate list ('A. ...' and 'B. ...' on separate lines)."""
    return len({m.group(1) for m in re.finditer(r"(?m)^\s*\**([A-D])\**[.):]", text)}) >= 2


def _strict_en(text: str) -> str | None:
    if is_option_listing(text):
        return None
    m = re.match(r"^\s*[\(\[\*]*([A-D])(?![A-Za-z0-9])[\)\]\*]*(.*)", text, re.S)
    if not m:
        return None
    rest = m.group(2)
    if m.group(1) == "A" and re.match(r"^\s+[a-z]", rest):  # "A good reply ..." is an article
        word = re.match(r"^\s+([a-z]+)", rest)
        if word and word.group(1) not in _ARTICLE_OK:
            return None
    return m.group(1)


def _matches(patterns: list[str], text: str, allowed: str, flags: int = re.I | re.M) -> set[str]:
    found: set[str] = set()
    for p in patterns:
        for m in re.finditer(p, text, flags):
            letter = next(g for g in m.groups() if g)
            if letter not in allowed or _NEG.search(text[max(0, m.start() - 40) : m.start(m.lastindex or 1)]):
                continue
            found.add(letter)
    return found


def _norm(s: str) -> str:
    return " ".join(s.lower().translate(str.maketrans("", "", string.punctuation + "“”‘’。，！？：；")).split())


def _by_content(text: str, options: dict[str, str] | None) -> str | None:
    if not options:
        return None
    t = _norm(text)
    hits = [k for k, v in options.items() if _norm(v) and _norm(v) in t]
    return hits[0] if len(hits) == 1 else None


def _tiered(tiers: list[set[str]]) -> str | None:
    for found in tiers:
        if len(found) == 1:
            return next(iter(found))
        if len(found) > 1:
            return None  # conflicting evidence at the same level: do not guess
    return None


def lenient_en(text: str, options: dict[str, str] | None = None) -> str | None:
    """Fixed English lenient extractor (see module docstring)."""
    allowed = "".join(options) if options else LETTERS
    s = _strict_en(text)
    if s is not None and s in allowed:
        stated = _matches(_EN_STRONG, text, allowed)
        return s if not stated or stated == {s} else None  # "A. ... The correct answer is D": no guess
    # Keywords are case-insensitive, the letter itself must be a capital.
    strong, medium = _matches(_EN_STRONG, text, allowed), _matches(_EN_MEDIUM, text, allowed)
    hedge = r"(?<![A-Za-z])[A-D]\s*(?:,|or|and|/)\s*(?:maybe\s+|option\s+)?[A-D](?![A-Za-z])"
    if not strong and not medium and re.search(hedge, text):
        return None  # hedging between letters ("A or B") without an explicit answer
    tiers = [strong, medium, set() if is_option_listing(text) else _matches(_EN_WEAK, text, allowed)]
    tiers = [{x for x in t if x.isupper()} for t in tiers]
    got = _tiered(tiers)
    return got if got is not None or any(tiers) else _by_content(text, options)


def anchored_en(text: str, options: dict[str, str] | None = None) -> str | None:
    """Strict, or an explicit answer statement on the first or the last non-empty line."""
    allowed = "".join(options) if options else LETTERS
    s = _strict_en(text)
    if s is not None and s in allowed:
        return s
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return None
    head = r"^\s*\**(?:the\s+)?(?:correct\s+|best\s+|final\s+|right\s+)?(?:answer|option|choice)\**\s*(?:is|:)?\s*:?\s*"
    for line in (lines[0], lines[-1]):
        m = re.match(head + r"(?:option\s+)?" + _L, line, re.I)
        if m and m.group(1) in allowed:
            return m.group(1)
    if len(lines) > 1 and is_option_listing(text):
        return None
    m = re.match(r"^\s*[\(\[\*]*([A-D])[\)\]\*.]*\s*$", lines[-1])
    return m.group(1) if m and m.group(1) in allowed else None


# ------------------------------------------------------------------------------------------ fixed Chinese
_Z = r"([A-D])(?![A-Za-z])"
_ZH_STRONG = [
    r"答案(?:选项)?(?:应该|应当)?(?:是|为)[:：]?\s*(?:选项)?\s*" + _Z,
    r"(?:^|[^不])(?:故|所以|因此)?选(?:择)?[:：]?\s*" + _Z,
    r"正确的?(?:选项|答案)(?:是|为|应该是)\s*" + _Z,
    r"(?:选项)?\s*" + _Z + r"\s*(?:选项)?\s*(?:是|为)?(?:正确|当选|符合题意)",
    r"答案\s*[:：]\s*" + _Z,
    r"【候选选项】\s*" + _Z,
]
_ZH_MEDIUM = [r"(?:^|[^不])是\s*[:：]?\s*" + _Z]


def _strict_zh(text: str) -> str | None:
    if is_option_listing(text):
        return None
    m = re.match(r"^\s*[\(（]?([A-D])(?![A-Za-z])", text)
    if not m or text[m.end() :].lstrip().startswith(("不", "错", "和", "与", "、", "或", "/")):
        return None  # "D不正确" / "A和B" do not answer with their first letter
    return m.group(1)


def _zh_matches(patterns: list[str], text: str, allowed: str) -> set[str]:
    found = set()
    for p in patterns:
        for m in re.finditer(p, text, re.M):
            letter = m.group(1)
            after = text[m.end() : m.end() + 2]
            if letter in allowed and not after.startswith(("不正确", "错误", "不对", "不符合")):
                found.add(letter)
    negated = r"(?:不|不是|并非|排除|错误的?是?)\s*(?:选项)?\s*{}(?![A-Za-z])"
    return {x for x in found if not re.search(negated.format(x), text) or re.search(r"答案(?:是|为)\s*" + x, text)}


def lenient_zh(text: str, options: dict[str, str] | None = None) -> str | None:
    """Fixed Chinese lenient extractor: same cues as the CMMLU cascade, without negated or ambiguous hits."""
    allowed = "".join(options) if options else LETTERS
    text = str(text).strip()
    s = _strict_zh(text)
    if s is not None and s in allowed:
        return s
    tiers = [_zh_matches(_ZH_STRONG, text, allowed), _zh_matches(_ZH_MEDIUM, text, allowed)]
    alone = {m.group(1) for m in re.finditer(r"(?<![A-Za-z])([A-D])(?![A-Za-z])", text) if m.group(1) in allowed}
    tiers.append(alone)
    got = _tiered(tiers)
    return got if got is not None or any(tiers) else _by_content(text, options)


def anchored_zh(text: str, options: dict[str, str] | None = None) -> str | None:
    """Strict, or '答案是X' / '答案：X' / '选X' on the first or last line, or a lone letter as the last line."""
    allowed = "".join(options) if options else LETTERS
    s = _strict_zh(str(text).strip())
    if s is not None and s in allowed:
        return s
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    if not lines:
        return None
    pat = r"^(?:正确的?)?(?:答案|选项|选择|选)(?:应该)?(?:是|为)?\s*[:：]?\s*(?:选项)?\s*" + _Z
    for line in (lines[0], lines[-1]):
        m = re.match(pat, line)
        if m and m.group(1) in allowed:
            return m.group(1)
    m = re.match(r"^[\(（]?([A-D])[\)）]?[。.]?$", lines[-1])
    return m.group(1) if m and m.group(1) in allowed else None


# ------------------------------------------------------------------------------------------ entry point
def extract(text: str, lang: str = "en", options: dict[str, str] | None = None) -> Extraction:
    """Run every extractor on one model output; `options` limits letters and allows content matching."""
    text = "" if text is None else str(text)
    if lang == "zh":
        orig = original_zh(text)[1]
        sz = _strict_zh(text.strip())
        allowed = "".join(options) if options else LETTERS
        return Extraction(
            sz if sz is not None and sz in allowed else None,
            lenient_zh(text, options),
            anchored_zh(text, options),
            orig,
        )
    s = _strict_en(text)
    allowed = "".join(options) if options else LETTERS
    return Extraction(
        s if s is not None and s in allowed else None,
        lenient_en(text, options),
        anchored_en(text, options),
        original_en(text)[1],
    )
