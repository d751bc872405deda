"""The generation plan: one job per instance, with domain, speaker styles and gold position fixed up front."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

from distillkit.dialogbench.schema import LETTERS
from distillkit.errors import UserError
from distillkit.seeding import derive_seed


@dataclass(frozen=True)
class Job:
    """One instance to generate. `domain`, `styles`, `gold` are None when that mitigation is off."""

    task: str
    lang: str
    index: int
    domain: str | None
    styles: tuple[str, str] | None
    gold: str | None
    seed: int

    @property
    def key(self) -> str:
        return f"{self.task}-{self.index:05d}"

    @property
    def id(self) -> str:
        return f"gen-{self.lang}-{self.task}-{self.index:05d}"

    def to_dict(self) -> dict:
        return asdict(self)


def balanced_count(per_task: int, n_domains: int, rounding: str | None) -> tuple[int, str | None]:
    """Per-task count that splits exactly over the domains, and a note saying how it was rounded (if it was)."""
    if per_task < 1:
        raise UserError(f"--per-task must be at least 1, got {per_task}")
    if per_task % n_domains == 0:
        return per_task, None
    down, up = per_task // n_domains * n_domains, -(-per_task // n_domains) * n_domains
    if rounding == "up" or (rounding == "down" and down == 0):
        n = up
    elif rounding == "down":
        n = down
    else:
        raise UserError(
            f"--per-task {per_task} cannot be split evenly over {n_domains} domains; use --per-task "
            f"{down or up} or {up}, or pass --round up/down (or --no-domain-balance)"
        )
    return n, f"--per-task {per_task} rounded {'up' if n == up else 'down'} to {n} ({n // n_domains} per domain)"


def _cycle(items: list, n: int, rng: random.Random) -> list:
    """n items drawn as whole shuffled passes over `items`, so counts differ by at most one."""
    out: list = []
    while len(out) < n:
        block = list(items)
        rng.shuffle(block)
        out += block
    return out[:n]


def make_plan(
    tasks: list[str],
    per_task: int,
    lang: str,
    n_options: int,
    seed: int,
    domain_list: list[str],
    style_list: list[str],
    domain_balance: bool = True,
    style_mix: bool = True,
    position_balance: bool = True,
) -> list[Job]:
    """Jobs for every task: domains round-robin (exact counts), styles and gold letters in shuffled passes."""
    jobs: list[Job] = []
    for t_i, task in enumerate(tasks):
        rng = random.Random(f"{seed}:{task}:{lang}")
        doms = [domain_list[i % len(domain_list)] for i in range(per_task)] if domain_balance else [None] * per_task
        golds = _cycle(list(LETTERS[:n_options]), per_task, rng) if position_balance else [None] * per_task
        sa, sb = _cycle(style_list, per_task, rng), _cycle(style_list, per_task, rng)
        for i in range(per_task):
            styles = (sa[i], sb[i]) if style_mix else None
            jobs.append(Job(task, lang, i, doms[i], styles, golds[i], derive_seed(seed, "generation_job", t_i, i)))
    return jobs
