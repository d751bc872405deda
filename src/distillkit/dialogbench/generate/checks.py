"""Quality checks that need no LLM: option count, duplicates, answer leaks, dialogue length, two parties."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from difflib import SequenceMatcher

from distillkit.dialogbench.schema import Instance

CHECKS = (
    "option_count",
    "two_party",
    "dialogue_length",
    "duplicate_options",
    "near_duplicate_options",
    "answer_leak",
    "duplicate_dialogue",
    "near_duplicate_dialogue",
)


@dataclass(frozen=True)
class CheckSettings:
    """Thresholds; `min_turns`/`max_turns` count exchanges (two utterances each)."""

    n_options: int = 4
    min_turns: float = 5.0
    max_turns: float = 40.0
    option_similarity: float = 0.9
    dialogue_similarity: float = 0.8
    min_leak_chars: int = 4


def norm(text: str) -> str:
    """Lower-cased, accent- and punctuation-free text with single spaces (for duplicate checks)."""
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(re.sub(r"[^\w]+", " ", text).split())


def shingles(text: str, k: int = 3) -> set[str]:
    """Word k-grams (character k-grams for text without spaces, e.g. Chinese)."""
    t = norm(text)
    words = t.split()
    if len(words) < 2 * k:
        t = t.replace(" ", "")
        return {t[i : i + k] for i in range(max(1, len(t) - k + 1))}
    return {" ".join(words[i : i + k]) for i in range(len(words) - k + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def check_instance(inst: Instance, s: CheckSettings) -> str | None:
    """The first failed per-instance check as 'name: detail', or None."""
    if len(inst.options) != s.n_options:
        return f"option_count: {len(inst.options)} options, {s.n_options} wanted"
    if len({t.speaker for t in inst.dialogue}) != 2:
        return f"two_party: {len({t.speaker for t in inst.dialogue})} distinct speakers"
    turns = len(inst.dialogue) / 2
    if turns < s.min_turns or turns > s.max_turns:
        return f"dialogue_length: {turns:g} turns, allowed {s.min_turns:g}-{s.max_turns:g}"
    texts = [norm(v) for v in inst.options.values()]
    if len(set(texts)) < len(texts):
        return "duplicate_options: two options have the same text"
    letters = list(inst.options)
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            r = SequenceMatcher(None, texts[i], texts[j]).ratio()
            if r >= s.option_similarity:
                return f"near_duplicate_options: {letters[i]} and {letters[j]} are {r:.2f} similar"
    gold = norm(inst.gold_text)
    if inst.slot and len(gold.replace(" ", "")) >= s.min_leak_chars and gold in norm(inst.slot):
        return "answer_leak: the correct option's text appears in the slot"
    return None


def duplicate_dialogues(instances: list[Instance], threshold: float) -> dict[str, str]:
    """id -> reason for every instance whose dialogue repeats an earlier one (exactly or nearly)."""
    seen_exact: dict[str, str] = {}
    kept: list[tuple[str, set[str]]] = []
    out: dict[str, str] = {}
    for inst in instances:
        full = "\n".join(t.text for t in inst.dialogue)
        exact = norm(full)
        if exact in seen_exact:
            out[inst.id] = f"duplicate_dialogue: same dialogue as {seen_exact[exact]}"
            continue
        sh = shingles(full)
        near = next(((i, jaccard(sh, o)) for i, o in kept if jaccard(sh, o) >= threshold), None)
        if near is not None:
            out[inst.id] = f"near_duplicate_dialogue: {near[1]:.2f} similar to {near[0]}"
            continue
        seen_exact[exact] = inst.id
        kept.append((inst.id, sh))
    return out
