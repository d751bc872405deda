"""Gold-swap position variants (the official Qwen/Baichuan position-balanced mode): the gold text trades
places with the option at each position in turn, every other option stays where it was."""

from __future__ import annotations

from distillkit.dialogbench.schema import Instance


def gold_swap(inst: Instance, k: int) -> tuple[dict[str, str], str]:
    """Variant k of an instance: options with the gold text swapped into the letter `rotate(inst, k)` would
    give it, and that letter. Variant 0 is the instance as stored; variants 0..n-1 put the gold at every letter
    once."""
    letters = list(inst.options)
    target = letters[(letters.index(inst.label) - k) % len(letters)]
    opts = dict(inst.options)
    opts[target], opts[inst.label] = inst.options[inst.label], inst.options[target]
    return opts, target


def gold_swaps(inst: Instance) -> list[tuple[dict[str, str], str]]:
    """All n variants of an instance with n options, variant 0 first."""
    return [gold_swap(inst, k) for k in range(len(inst.options))]
