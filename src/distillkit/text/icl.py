"""In-context learning with a small set: k-shot prompts, label-word likelihood on any causal LM.

The prompt is a list of demonstrations ("Review: ...\\nSentiment: great") followed by the query. If it
does not fit the token budget, demonstrations are dropped (never the query) and the drop is counted.
Scoring: the label word with the highest log-likelihood after the query is the prediction
(`distillkit.lm.LocalLM.loglikelihood`; requests sharing a prompt share one forward pass).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from distillkit.data.text import TextDataset, subsample
from distillkit.seeding import derive_seed
from distillkit.text.evaluate import scores, summarize

if TYPE_CHECKING:
    from distillkit.lm.local import LocalLM

FIELD_NAMES = {1: ("Review",), 2: ("Sentence 1", "Sentence 2")}
ANSWER = {1: "Sentiment", 2: "Label"}


def format_example(text: tuple[str, ...], answer: str | None = None) -> str:
    names = FIELD_NAMES[len(text)]
    lines = [f"{n}: {t}" for n, t in zip(names, text, strict=True)]
    lines.append(f"{ANSWER[len(text)]}:" + (f" {answer}" if answer is not None else ""))
    return "\n".join(lines)


def pick_demonstrations(small: TextDataset, shots_per_class: int, seed: int) -> list[int]:
    """Up to `shots_per_class` rows per class from the small set, interleaved in a seeded order."""
    rng = np.random.default_rng(seed)
    per = [rng.permutation(np.flatnonzero(small.labels == c))[:shots_per_class] for c in range(small.num_classes)]
    order = [int(i) for k in range(shots_per_class) for p in per if k < len(p) for i in [p[k]]]
    return order


def build_prompt(
    small: TextDataset, demos: list[int], query: tuple[str, ...], words: list[str], tokenizer, max_tokens: int
) -> tuple[str, int]:
    """(prompt ending in the answer cue, number of demonstrations dropped to fit `max_tokens`)."""
    q = format_example(query)
    kept = list(demos)
    while True:
        parts = [format_example(small.texts[i], words[int(small.labels[i])]) for i in kept]
        prompt = "\n\n".join([*parts, q])
        if not kept or len(tokenizer(prompt).input_ids) + 8 <= max_tokens:
            return prompt, len(demos) - len(kept)
        kept = kept[:-1]  # drop the last demonstration; the query is never cut


def icl_evaluate(
    lm: LocalLM,
    small: TextDataset,
    test: TextDataset,
    words: list[str],
    shots_per_class: int,
    seed: int,
    max_tokens: int = 1024,
) -> dict[str, Any]:
    """Accuracy of label-word prediction on `test` with demonstrations from `small`. `lm` is a local model of the
    LM protocol: its own tokenizer measures each prompt against `max_tokens`."""
    demos = pick_demonstrations(small, shots_per_class, seed)
    requests, dropped = [], 0
    for text in test.texts:
        prompt, d = build_prompt(small, demos, text, words, lm.tokenizer, max_tokens)
        dropped += d
        requests += [(prompt, " " + w) for w in words]
    ll = np.asarray(lm.loglikelihood(requests)).reshape(len(test), len(words))
    res = scores(ll.argmax(1), test.labels, test.metric)
    return {**res, "demonstrations": len(demos), "demonstrations_dropped": dropped}


def run_icl(run, icl_cfg) -> dict[str, Any]:
    """ICL for the configured methods and DPCs of a run (sets loaded from the run directory)."""
    from distillkit.lm import load_local_lm

    lm = None
    test = subsample(run.data.test, icl_cfg.max_test, run.cfg.seed)
    words = list(icl_cfg.label_words or run.data.train.label_names)
    out: dict[str, Any] = {"model": icl_cfg.model, "label_words": words, "shots_per_class": icl_cfg.shots_per_class}

    def evaluate(method: str, dpc: int, r: int) -> dict[str, Any]:
        nonlocal lm
        if lm is None:
            lm = load_local_lm(icl_cfg.model, device=run.cfg.device, max_length=icl_cfg.prompt_max_tokens)
        small = run.build_set(method, dpc, r)
        shots_seed = derive_seed(run.cfg.seed, "icl_shots", r)
        return icl_evaluate(lm, small, test, words, icl_cfg.shots_per_class, shots_seed, icl_cfg.prompt_max_tokens)

    for method in icl_cfg.methods:
        out[method] = {}
        for dpc in run.cfg.dpcs:
            results = [
                run.run_dir.cached(f"icl/{method}_dpc{dpc}_set{r}.json", lambda m=method, d=dpc, r=r: evaluate(m, d, r))
                for r in range(run.n_sets(method))
            ]
            out[method][str(dpc)] = {**summarize(results), "runs": results}
    return out
