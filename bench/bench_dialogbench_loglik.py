"""Base-model scoring throughput and agreement: shared-context KV cache vs naive per-option loop vs lm-eval,
and against the floor: one forward pass over every unique token of the set.

The floor packs each instance as its context followed by all its options (every token that any method must
read, each once), left-pads the packed sequences of a chunk into one batch and runs one forward pass that
computes logits only for the option tokens. Any exact scorer reads at least these tokens; the floor skips the
per-option masking and cache reuse that exact scores need, so it is a lower bound on the time, not a scorer.
Same model, same instances, same process. Prints a JSON summary (and writes it with --out).

    .venv/bin/python bench/bench_dialogbench_loglik.py --model smollm2 --per-task 3 --rounds 1 \\
        --out bench/results/dialogbench_loglik.json
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import platform
import time
from pathlib import Path

import torch

from distillkit.dialogbench.render import base_context
from distillkit.dialogbench.schema import load_sample, read_jsonl
from distillkit.lm import load_local_lm


def pick(instances, per_task):
    seen: dict[str, int] = {}
    out = []
    for i in instances:
        seen[i.task] = seen.get(i.task, 0) + 1
        if seen[i.task] <= per_task:
            out.append(i)
    return out


def argbest(inst, results, norm):
    def score(r):
        return r.logprob / r.n_tokens if norm == "token" else r.logprob

    vals = [score(r) for r in results]
    return list(inst.options)[max(range(len(vals)), key=lambda j: (vals[j], -j))]


def floor_pass(lm, requests: list[tuple[str, str]]) -> list[None]:
    """One forward pass over the unique tokens of `requests` (each context once, then its options), logits
    for the option tokens only; returns one None per request (nothing is scored)."""
    packed: dict[str, list[int]] = {}
    tail: dict[str, int] = {}
    for context, option in requests:
        ctx, opt = lm.encode_pair(context, option)
        packed.setdefault(context, list(ctx)).extend(opt)
        tail[context] = tail.get(context, 0) + len(opt)
    width = max(len(ids) for ids in packed.values())
    batch = torch.full((len(packed), width), lm.tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(batch)
    for row, ids in enumerate(packed.values()):
        batch[row, width - len(ids) :] = torch.tensor(ids)
        mask[row, width - len(ids) :] = 1
    with torch.inference_mode():
        lm.model(
            batch.to(lm.device), attention_mask=mask.to(lm.device), use_cache=False, logits_to_keep=max(tail.values())
        )
    return [None] * len(requests)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--data", default="sample")
    ap.add_argument("--per-task", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-lm-eval", action="store_true")
    ap.add_argument("--skip-floor", action="store_true")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_at_start = round(os.getloadavg()[0], 1)
    lm = load_local_lm(args.model, device="cpu", batch_size=args.batch_size)
    items = pick(load_sample() if args.data == "sample" else read_jsonl(args.data), args.per_task)
    reqs = [[(base_context(i), t) for t in i.options.values()] for i in items]
    n_opts = sum(len(r) for r in reqs)

    harness = None
    if not args.skip_lm_eval:
        from lm_eval.api.instance import Instance
        from lm_eval.models.huggingface import HFLM

        harness = HFLM(
            pretrained=lm.model,
            tokenizer=lm.tokenizer,
            batch_size=args.batch_size,
            device="cpu",
            max_length=lm.max_length,
        )

        def run_harness(r):
            inst = [Instance(request_type="loglikelihood", doc={}, arguments=rq, idx=k) for k, rq in enumerate(r)]
            return [x[0] for x in harness.loglikelihood(inst, disable_tqdm=True)]

    methods = {"ours": lm.loglikelihood_detailed, "naive": lm.loglikelihood_naive}
    if not args.skip_floor:
        methods["floor"] = lambda r: floor_pass(lm, r)
    # each call gets the requests of `batch_size` instances (what `dialogbench eval` sends at once)
    chunks = [reqs[k : k + args.batch_size] for k in range(0, len(reqs), args.batch_size)]
    if harness is not None:
        methods["lm_eval"] = run_harness
    for f in methods.values():  # warm-up (allocator, kernels) for every method alike
        f(reqs[0])
    # The machine may be shared: methods run round-robin per chunk so load changes hit all of them alike;
    # wall time and process CPU time are both recorded.
    wall = dict.fromkeys(methods, 0.0)
    cpu = dict.fromkeys(methods, 0.0)
    outs: dict[str, list] = {k: [] for k in methods}
    for rnd in range(args.rounds):
        for ch in chunks:
            flat = [x for r in ch for x in r]
            for name, f in methods.items():
                t0, c0 = time.perf_counter(), time.process_time()
                o = f(flat)
                wall[name] += time.perf_counter() - t0
                cpu[name] += time.process_time() - c0
                if rnd == 0:
                    k = 0
                    for r in ch:
                        outs[name].append(o[k : k + len(r)])
                        k += len(r)
    ours, naive = outs["ours"], outs["naive"]
    n = len(items) * args.rounds
    res = {
        "model": args.model,
        "instances": len(items),
        "rounds": args.rounds,
        "options": n_opts,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "dtype": str(next(lm.model.parameters()).dtype).removeprefix("torch."),
        "load_average_at_start": load_at_start,
        "load_average_at_end": round(os.getloadavg()[0], 1),
        "context_tokens_mean": round(sum(len(lm.encode_pair(*r[0])[0]) for r in reqs) / len(reqs), 1),
        "option_tokens_mean": round(sum(len(lm.encode_pair(*x)[1]) for r in reqs for x in r) / n_opts, 1),
    }
    for name in methods:
        res[f"{name}_wall_s"] = round(wall[name], 2)
        res[f"{name}_cpu_s"] = round(cpu[name], 2)
        res[f"{name}_inst_per_s"] = round(n / wall[name], 3)
    if "floor" in methods:
        res["unique_tokens"] = sum(
            len(lm.encode_pair(*r[0])[0]) + sum(len(lm.encode_pair(*x)[1]) for x in r) for r in reqs
        )
        res["ours_over_floor_wall"] = round(wall["ours"] / wall["floor"], 2)
        res["ours_over_floor_cpu"] = round(cpu["ours"] / cpu["floor"], 2)
    for other in [m for m in methods if m not in ("ours", "floor")]:
        res[f"speedup_vs_{other}_wall"] = round(wall[other] / wall["ours"], 2)
        res[f"speedup_vs_{other}_cpu"] = round(cpu[other] / cpu["ours"], 2)
    same = sum(argbest(i, a, "token") == argbest(i, b, "token") for i, a, b in zip(items, ours, naive, strict=True))
    res["agree_token_vs_naive"] = f"{same}/{len(items)}"
    res["max_abs_logprob_diff_vs_naive"] = max(
        abs(x.logprob - y.logprob) for a, b in zip(ours, naive, strict=True) for x, y in zip(a, b, strict=True)
    )
    if harness is not None:
        agree = 0
        diffs = []
        for i, a, hs in zip(items, ours, outs["lm_eval"], strict=True):
            agree += list(i.options)[max(range(len(hs)), key=lambda j: (hs[j], -j))] == argbest(i, a, "sum")
            diffs += [abs(x - y.logprob) for x, y in zip(hs, a, strict=True)]
        res["lm_eval"] = importlib.metadata.version("lm_eval")
        res["agree_sum_vs_lm_eval"] = f"{agree}/{len(items)}"
        res["max_abs_logprob_diff_vs_lm_eval"] = max(diffs)
    res["accuracy_token_ours"] = round(
        100 * sum(argbest(i, a, "token") == i.label for i, a in zip(items, ours, strict=True)) / len(items), 2
    )
    print(json.dumps(res, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2))
    assert math.isfinite(res["max_abs_logprob_diff_vs_naive"])


if __name__ == "__main__":
    main()
