"""Base-model scoring throughput and agreement: shared-context KV cache vs naive per-option loop vs lm-eval.

Same model, same instances, same process. Prints a JSON summary (and writes it with --out).

    .venv/bin/python bench/bench_dialogbench_loglik.py --model smollm2 --per-task 1 --out runs/bench/loglik.json
"""

from __future__ import annotations

import argparse
import json
import math
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--data", default="sample")
    ap.add_argument("--per-task", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-lm-eval", action="store_true")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lm = load_local_lm(args.model, device="cpu", batch_size=args.batch_size)
    items = pick(load_sample() if args.data == "sample" else read_jsonl(args.data), args.per_task)
    reqs = [[(base_context(i), t) for t in i.options.values()] for i in items]
    n_opts = sum(len(r) for r in reqs)

    lm.loglikelihood_detailed(reqs[0])  # warm-up (allocator, kernels) for every method alike
    t0 = time.perf_counter()
    ours = [lm.loglikelihood_detailed(r) for r in reqs]
    t_ours = time.perf_counter() - t0

    t0 = time.perf_counter()
    naive = [lm.loglikelihood_naive(r) for r in reqs]
    t_naive = time.perf_counter() - t0

    res = {
        "model": args.model, "instances": len(items), "options": n_opts, "threads": args.threads,
        "batch_size": args.batch_size, "torch": torch.__version__, "python": platform.python_version(),
        "ours_s": round(t_ours, 2), "naive_s": round(t_naive, 2),
        "ours_inst_per_s": round(len(items) / t_ours, 3), "naive_inst_per_s": round(len(items) / t_naive, 3),
        "speedup_vs_naive": round(t_naive / t_ours, 2),
        "agree_token_vs_naive": sum(argbest(i, a, "token") == argbest(i, b, "token")
                                    for i, a, b in zip(items, ours, naive, strict=True)),
        "max_abs_logprob_diff_vs_naive": max(abs(x.logprob - y.logprob) for a, b in zip(ours, naive, strict=True)
                                             for x, y in zip(a, b, strict=True)),
    }
    if not args.skip_lm_eval:
        from lm_eval.api.instance import Instance
        from lm_eval.models.huggingface import HFLM

        harness = HFLM(pretrained=lm.model, tokenizer=lm.tokenizer, batch_size=args.batch_size, device="cpu",
                       max_length=lm.max_length)
        flat = [Instance(request_type="loglikelihood", doc={}, arguments=rq, idx=k)
                for k, rq in enumerate(x for r in reqs for x in r)]
        t0 = time.perf_counter()
        out = harness.loglikelihood(flat, disable_tqdm=True)
        t_h = time.perf_counter() - t0
        k = 0
        agree = 0
        diffs = []
        for i, a in zip(items, ours, strict=True):
            h = out[k:k + len(a)]
            k += len(a)
            hs = [x[0] for x in h]
            agree += list(i.options)[max(range(len(hs)), key=lambda j: (hs[j], -j))] == argbest(i, a, "sum")
            diffs += [abs(x - y.logprob) for x, y in zip(hs, a, strict=True)]
        res |= {"lm_eval_s": round(t_h, 2), "lm_eval_inst_per_s": round(len(items) / t_h, 3),
                "speedup_vs_lm_eval": round(t_h / t_ours, 2), "agree_sum_vs_lm_eval": agree,
                "max_abs_logprob_diff_vs_lm_eval": max(diffs)}
    res["accuracy_token_ours"] = round(100 * sum(argbest(i, a, "token") == i.label
                                                 for i, a in zip(items, ours, strict=True)) / len(items), 2)
    print(json.dumps(res, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2))
    assert math.isfinite(res["max_abs_logprob_diff_vs_naive"])


if __name__ == "__main__":
    main()
