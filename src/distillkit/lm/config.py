"""Generation settings shared by every backend, logged with every run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class GenerationConfig:
    """How to decode: greedy by default (`do_sample=False`), 256 new tokens."""

    max_new_tokens: int = 256
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d


def apply_stop(text: str, stop: tuple[str, ...] | list[str]) -> str:
    """Cut `text` at the first occurrence of any stop string."""
    cut = len(text)
    for s in stop:
        i = text.find(s)
        if s and i != -1:
            cut = min(cut, i)
    return text[:cut]
