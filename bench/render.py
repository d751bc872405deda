"""Render the tables of docs/benchmarks.md from the committed JSON under bench/results/.

A rendered block sits between `<!-- render: NAME -->` and `<!-- /render -->`; NAME is a renderer below,
each a function of one JSON file. `python bench/render.py` rewrites every block; `--check` only compares
and exits 1 naming the blocks that differ (the test suite runs it, so the docs cannot drift from the JSON).

    python bench/render.py            # rewrite docs/benchmarks.md
    python bench/render.py --check    # exit 1 if a block differs from what its JSON renders
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
BLOCK = re.compile(r"(<!-- render: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /render -->)", re.S)


def _pm(r: dict) -> str:
    return f"{r['mean']:.2f} ± {r['std']:.2f}"


def soft_label_protocol(d: dict) -> str:
    """Evaluation schedules (validation accuracy, fit) and proxy schedules (fit) from bench_soft_label_protocol."""
    t, lg = d["teacher"], d["teacher_logits_on_validation"]
    lines = [
        f"Dataset {d['dataset']}, ConvNet width {d['width']}. Teacher: validation {t['val_acc']:.2f} % at epoch "
        f"{t['best_epoch']} (stopped after {t['epochs_run']}, converged: {t['converged']}). Its logits on the "
        f"validation split: mean |logit| {lg['mean_abs']:.2f}, range {lg['min']:.2f} to {lg['max']:.2f}, "
        f"mean top-1 minus top-2 margin {lg['mean_top1_minus_top2']:.2f}, "
        f"mean top softmax probability {lg['mean_max_softmax']:.2f}.",
        "",
        "| eval epochs | eval lr | soft (L1) val acc. | soft fit on own set | hard (CE) val acc. "
        "| hard fit on own set |",
        "|---|---|---|---|---|---|",
    ]
    for r in d["eval_schedules"]:
        chosen = " **(chosen)**" if {"epochs": r["epochs"], "lr": r["lr"]} == d["chosen_eval"] else ""
        lines.append(
            f"| {r['epochs']}{chosen} | {r['lr']:g} | {r['soft_val_acc']:.2f} | {r['soft_train_fit']:.1f} | "
            f"{r['hard_val_acc']:.2f} | {r['hard_train_fit']:.1f} |"
        )
    lines += [
        "",
        "| IPC | proxy epochs E | proxy lr | agreement with the teacher at each kept checkpoint (%) | seconds |",
        "|---|---|---|---|---|",
    ]
    for r in d["proxy_schedules"]:
        fits = " / ".join(f"{f:.0f}" for f in r["fit"])
        lines.append(f"| {r['ipc']} | {r['student_epochs']} | {r['lr_net']:g} | {fits} | {r['seconds']:.1f} |")
    c = d["chosen_proxy"]
    lines += [
        "",
        f"Chosen proxy schedule: E = {c['student_epochs']}, lr_net = {c['lr_net']:g} "
        f"(mean final agreement {c['mean_fit']:.1f} %).",
    ]
    return "\n".join(lines)


def apm_vs_random(d: dict) -> str:
    """APM beside the random baseline (mean ± std over draws) under both label modes (bench_apm_vs_random)."""
    lines = [
        "| dataset | IPC | schedule | T / E / K | labels | APM | random (± std over draws) | APM − random ± 2 std "
        "| verdict | APM's initial images | APM − its initial images | APM fit | proxy fit |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in d["rows"]:
        g = r["gain"]
        verdict = ("gain" if g["value"] > 0 else "loss") if g["significant"] else "within noise"
        a = r["config"]["apm"]
        lines.append(
            f"| {r['dataset']} | {r['ipc']} | {r['schedule']} | {a['iterations']} / {a['student_epochs']} / "
            f"{a['num_checkpoints']} | {r['labels']} | {_pm(r['apm'])} | {_pm(r['random'])} | "
            f"{g['value']:+.2f} ± {g['uncertainty']:.2f} | {verdict} | {_pm(r['init'])} | {r['minus_init']:+.2f} | "
            f"{r['apm']['train_fit']:.1f} | {r['proxy_fit']:.1f} |"
        )
    refs = [f"{k}: {v}" for k, v in d.get("references", {}).items()]
    if refs:
        lines += ["", "References: " + "; ".join(refs) + "."]
    return "\n".join(lines)


def dilm_stage2(d: dict) -> str:
    """Stage-2 readings per learning rate and outer loop, and DPC-10 validation accuracy (bench_dilm_stage2)."""
    lines = [
        "| lr | step | matching: train, objective | validation, objective | train, fresh | validation, fresh "
        "| fidelity: probe | judge | distinct-2 | validation LM loss | generative classifier | drift |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in d["runs"]:
        for c in r["checkpoints"]:
            m = c["matching"]
            lines.append(
                f"| {r['lr']:g} | {c['step']} | {m['train_objective']:.4f} | {m['validation_objective']:.4f} | "
                f"{m['train_fresh']:.4f} | {m['validation_fresh']:.4f} | {c['fidelity_probe']:.1f} | "
                f"{c['fidelity_judge']:.1f} | {c['distinct_2']:.3f} | {c['validation_lm_loss']:.3f} | "
                f"{c['conditioning']['balanced_accuracy']:.1f} | {c.get('parameter_drift', 0.0):.3f} |"
            )
    ref, ceil = d["setup"]["reference_distances"], d["setup"]["judge_ceilings_validation"]
    lines += [
        "",
        "Real against real (train batches of 20 vs validation batches of 16): same class "
        f"{ref['train_same_class']:.4f}, the other class's reviews {ref['train_other_class']:.4f}; "
        "cosine of the two classes' mean features "
        f"{ref['cos_class_mean_features']:.4f}. Judges on the real validation reviews (balanced accuracy): "
        f"probe {ceil['probe']:.1f}, judge {ceil['judge']:.1f}.",
    ]
    states = {k: v for k, v in ref.items() if isinstance(v, dict)}
    if states:
        gaps = "; ".join(
            f"{k}: {v['train_same_class']:.4f} / {v['train_other_class']:.4f}"
            for k, v in sorted(states.items(), key=lambda kv: [int(x) for x in re.findall(r"\d+", kv[0])])
        )
        lines += ["", f"The same per learner state (same class / other class): {gaps}."]
    if "vanilla_dpc10" in d:
        lines += ["", "| DPC-10 sets from | runs | validation accuracy | macro-F1 |", "|---|---|---|---|"]
        rows = [("random real reviews", d["random_dpc10"]), ("vanilla LM (stage 1 only)", d["vanilla_dpc10"])]
        rows += [(f"stage 2 at lr {r['lr']:g}", r["dpc10_final"]) for r in d["runs"]]
        for name, x in rows:
            lines.append(
                f"| {name} | {x['runs']} | {x['accuracy']:.1f} ± {x['accuracy_std']:.1f} | "
                f"{x['macro_f1']:.1f} ± {x['macro_f1_std']:.1f} |"
            )
    return "\n".join(lines)


DILM_ROWS = {
    "vanilla_lm": "plain fine-tuned LM (stage 1 only)",
    "dilm": "DiLM (stage-2 checkpoint chosen on validation)",
    "dilm_last": "DiLM, last stage-2 generator (not chosen)",
    "random": "random real subset",
    "kmeans_medoid": "K-means medoid",
    "herding": "herding",
}


def dilm_bench(d: dict) -> str:
    """DiLM, the plain LM, random subsets, coresets and full data, with spreads over sets and gains (bench_dilm)."""
    dpcs = d["dpcs"]
    ordered = sorted(dpcs, key=int)
    lines = [
        "| method | sets × runs | " + " | ".join(f"DPC {x}" for x in ordered) + " |",
        "|---|---|" + "---|" * len(ordered),
    ]
    rows = [(key, name) for key, name in DILM_ROWS.items() if key in d["rows"]]
    for key, name in rows:
        per = d["rows"][key]
        first = per[dpcs[0]]
        spread = {x: per[x]["std"] if per[x]["sets"] > 1 else per[x]["std_runs"] for x in ordered}
        cells = " | ".join(f"{per[x]['mean']:.1f} ± {spread[x]:.1f}" for x in ordered)
        lines.append(f"| {name} | {first['sets']} × {first['runs'] // first['sets']} | {cells} |")
    f = d["full"]  # None in a run of generated sets only
    if f is not None:
        lines.append(
            f"| full data ({d['split_sizes']['train']:,} reviews) | 1 × {f['runs']} | "
            + " | ".join([f"{f['mean']:.1f} ± {f['std_runs']:.1f}"] * len(ordered))
            + " |"
        )
    steps = (
        f"Full data: steps chosen on validation {', '.join(str(s) for s in sorted(f['selected_steps']))} of "
        f"{f['steps']}. "
        if f
        else ""
    )
    bases = [b for b in ("vanilla_lm", "random") if b in d["gains"][dpcs[0]]]
    lines += [
        "",
        f"Test: {d['split_sizes']['test']:,} reviews (majority class {d['test_majority_rate']:.1f} %); ± is the std "
        "of the per-set means over the sets (the draws' spread; one set: over its runs). "
        + steps
        + f"Macro-F1 at DPC {dpcs[0]}: "
        + ", ".join(f"{name.split(' (')[0]} {d['rows'][k][dpcs[0]]['macro_f1']:.1f}" for k, name in rows)
        + (f", full data {f['macro_f1']:.1f}." if f else "."),
        "",
        "| DPC | " + " | ".join(f"DiLM − {_GAIN_BASES[b]} | verdict" for b in bases) + " |",
        "|---|" + "---|---|" * len(bases),
    ]
    for x in ordered:
        cells = []
        for base in bases:
            g = d["gains"][x][base]
            verdict = ("above" if g["value"] > 0 else "below") if g["significant"] else "within the spread"
            cells += [f"{g['value']:+.1f} ± {g['uncertainty']:.1f}", verdict]
        lines.append(f"| {x} | " + " | ".join(cells) + " |")
    val = d["stage2_validation"]
    scores = sorted(val["scores"].values(), key=lambda s: s["step"])
    cfg = d["config"]
    lines += [
        "",
        f"Stage-2 checkpoints, validation accuracy of {cfg['val_sets']} generated DPC-{cfg['val_dpc']} sets × "
        f"{cfg['val_runs']} runs: "
        + ", ".join(f"step {s['step']} {s['validation_accuracy']:.1f}" for s in scores)
        + f"; chosen: step {val['scores'][val['best']]['step']}. Stage 2: {d['stage2_steps']} generator steps "
        f"at lr {cfg['gm']['lr']:g}, {d['stage2_seconds'] / 60:.1f} min. Bench wall time {d['wall_seconds'] / 60:.1f} "
        f"min (torch {d['provenance']['torch']}, {d['provenance']['device']}).",
    ]
    return "\n".join(lines + _dilm_fidelity(d.get("extras") or {}))


_GAIN_BASES = {"vanilla_lm": "plain LM", "random": "random"}


def _dilm_fidelity(ex: dict) -> list[str]:
    """Label fidelity of the generated sets and class conditioning of the generators, when bench_dilm measured them."""
    if "label_fidelity" not in ex:
        return []
    fid, cond = ex["label_fidelity"], ex["generator_conditioning"]
    lines = [
        "",
        "| generator | fidelity: probe | fidelity: judge | generative classifier | loss spread (nats/token) |",
        "|---|---|---|---|---|",
    ]
    gens = [("vanilla_lm", "vanilla"), ("dilm", "dilm"), ("dilm_last", "dilm_last")]
    for key, tag in (g for g in gens if g[1] in cond):
        f = fid.get(key)
        cells = [f"{f[j]['mean']:.1f} ± {f[j]['std']:.1f}" if f else "–" for j in ("probe", "judge")]
        c = cond[tag]
        lines.append(
            f"| {DILM_ROWS[key].split(' (')[0]} | {' | '.join(cells)} | {c['balanced_accuracy']:.1f} | "
            f"{c['mean_loss_spread']:.4f} |"
        )
    sets = fid["dilm"]
    lines += [
        "",
        f"Fidelity: balanced accuracy of a judge on the texts of the {sets['sets']} DPC-{sets['dpc']} sets, the class "
        "each was generated for taken as the truth (50 = no class information); the judges' own balanced accuracy "
        f"on the real test reviews: probe {fid['probe_real_test_balanced_accuracy']:.1f}, judge "
        f"{fid['judge_real_test_balanced_accuracy']:.1f}. Generative classifier and loss spread: on the validation "
        "reviews.",
    ]
    return lines


def mistakes(d: dict) -> str:
    """Mistakes tried, clean one-line refusals, tracebacks and changed files (bench_mistakes)."""
    lines = [
        "| mistakes tried | clean one-line refusals | tracebacks | runs that changed a file | commands covered |",
        "|---|---|---|---|---|",
        f"| {d['tried']} | {d['clean']} ({100 * d['clean'] / d['tried']:.0f} %) | {d['tracebacks']} | "
        f"{d['files_changed']} | {len(d['commands'])} |",
    ]
    bad = [c for c in d["cases"] if not c["clean"]]
    if bad:
        lines += ["", "Not clean: " + "; ".join(f"`{c['command']}`" for c in bad)]
    return "\n".join(lines) + "\n"


def kill_resume(d: dict) -> str:
    """SIGKILL trials per command: killed, identical final results (bench_kill_resume)."""
    lines = [
        "| command | stages | uninterrupted run (s) | trials | killed mid-run | identical results |",
        "|---|---|---|---|---|---|",
    ]
    for name, sc in d["scenarios"].items():
        lines.append(
            f"| `{name}` | {sc['stages']} | {sc['reference_seconds']:.0f} | {len(sc['trials'])} | {sc['killed']} | "
            f"{sc['identical']} |"
        )
    lines.append(f"| **all** | | | {d['total_trials']} | {d['total_killed']} | **{d['total_identical']}** |")
    return "\n".join(lines) + "\n"


def hanging_server(d: dict) -> str:
    """Time to a clean failure against a server that never answers (bench_hanging_server)."""
    lines = ["| flags | seconds to exit | exit code | lines on stderr | the line |", "|---|---|---|---|---|"]
    for r in d["runs"]:
        line = r["last_line"].replace("|", "\\|")
        lines.append(f"| {r['flags']} | {r['seconds_to_exit']:.0f} | {r['exit_code']} | {r['stderr_lines']} | {line} |")
    return "\n".join(lines) + "\n"


def server_base(d: dict) -> str:
    """Base-mode scoring over a loopback log-probability server vs local scoring (bench_dialogbench_server_base)."""
    same = d["identical_predictions"]
    lines = [
        "| | local | over the server |",
        "|---|---|---|",
        f"| overall (token norm) | {d['overall_local']:.2f} | {d['overall_server']:.2f} |",
        f"| wall time (s) | {d['local_wall_s']:.0f} | {d['server_wall_s']:.0f} |",
        f"| process CPU time (s) | {d['local_cpu_s']:.1f} | {d['server_cpu_s']:.1f} |",
        "",
        f"Identical predictions over {d['instances']} instances: token {same['token']}, sum {same['sum']}, char "
        f"{same['char']}; identical option token counts {d['identical_token_counts']} of {d['options']}; largest "
        f"log-probability difference {d['max_abs_logprob_diff']:.1e}; {d['server_usage']['requests']} requests; "
        f"server / local wall time {d['server_over_local_wall']:.2f}.",
    ]
    return "\n".join(lines) + "\n"


_ARCH_NAMES = {"resnet18": "ResNet-18 w16", "vgg11": "VGG-11 w16"}
_DATASET_NAMES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}


def _dataset(name: str) -> str:
    return _DATASET_NAMES.get(name, name)


def _exp(x: float) -> str:
    """A small number in short scientific notation: 3.1e-11, 8e-5."""
    mantissa, exponent = f"{x:.1e}".split("e")
    return f"{mantissa.removesuffix('.0')}e{int(exponent)}"


def apm_memory(d: dict) -> str:
    """Peak memory and seconds of one APM image update against the segment size (bench_apm_memory)."""
    s, rows = d["setting"], d["rows"]
    scale = rows[0]["grad_scale"]
    lines = [
        "| segment | of B_syn | peak memory (MB) | s / update | memory vs full | time vs full "
        f"| max abs gradient difference (gradient scale {_exp(scale)}) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        diff = _exp(r["max_abs_grad_diff"]) if r["max_abs_grad_diff"] else "0"
        lines.append(
            f"| {r['segment']} | {r['fraction']} | {r['peak_mb']:.0f} | {r['sec_per_update']:.1f} | "
            f"{r['memory_ratio_vs_full']:.2f} | {r['time_ratio_vs_full']:.2f} | {diff} |"
        )
    worst = max(r["max_abs_grad_diff"] for r in rows) / scale
    lines += [
        "",
        f"{_dataset(s['dataset'])}, IPC {s['ipc']}, K = {s['k']}, {s['steps']} timed updates per setting, "
        f"{s['threads']} threads, {s['device']}. Largest gradient difference relative to the gradient scale: "
        f"{_exp(worst)}.",
    ]
    return "\n".join(lines) + "\n"


def apm_vs_mtt(d: dict) -> str:
    """Peak memory and seconds per iteration: APM's segment sizes vs MTT and TESLA (bench_apm_vs_mtt)."""
    lines = [
        "| shape | IPC | method | setting | peak memory (MB) | APM image step / proxy refresh (MB) | s / iteration "
        "| APM refresh share of the iteration | memory vs MTT | time vs MTT | published schedule (h) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    every = d["setting"]["refresh_every"]
    for r in d["rows"]:
        apm = r["method"] == "apm"
        parts = f"{r['image_step_mb']:.0f} / {r['proxy_mb']:.0f}" if apm else "–"
        share = f"{100 * r['refresh_sec'] / every / r['sec']:.0f} %" if apm else "–"
        lines.append(
            f"| {r['shape']} | {r['ipc']} | {r['method'].upper()} | {r['variant']} | {r['peak_mb']:.0f} | {parts} | "
            f"{r['sec']:.1f} | {share} | {r['memory_vs_mtt']:.2f} | {r['time_vs_mtt']:.2f} | "
            f"{r['published_total_h']:.1f} |"
        )
    cells = {(r["shape"], r["ipc"]) for r in d["rows"]}
    versus = []
    for shape, ipc in sorted(cells, key=lambda c: (c[1], c[0])):
        rows = [r for r in d["rows"] if (r["shape"], r["ipc"]) == (shape, ipc)]
        apm = min((r for r in rows if r["method"] == "apm"), key=lambda r: r["peak_mb"])
        by = {r["method"]: r for r in rows}
        versus.append(
            f"{shape} IPC {ipc}: 1/{by['mtt']['peak_mb'] / apm['peak_mb']:.0f} of MTT's, "
            f"{apm['peak_mb'] / by['tesla']['peak_mb']:.2f}× TESLA's"
        )
    return "\n".join(lines + ["", "APM's memory at its smallest segment: " + "; ".join(versus) + "."]) + "\n"


def apm_accuracy(d: list) -> str:
    """APM vs a random real subset under the same labels, and the full data (bench_apm_accuracy)."""
    lines = [
        "| dataset | IPC | labels | APM | random real subset | APM − random | run wall time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    labels = [("", "teacher soft labels, L1"), ("_hard", "hard labels, CE")]
    for r in d:
        for suffix, name in labels:
            apm, rnd = r["apm" + suffix], r["random" + suffix]
            lines.append(
                f"| {_dataset(r['dataset'])} | {r['ipc']} | {name} | {_pm(apm)} | {_pm(rnd)} | "
                f"{apm['mean'] - rnd['mean']:+.2f} | {r['seconds']:.0f} |"
            )
    lines.append("")
    for r in d:
        if "full" in r:
            lines.append(f"Full data ({_dataset(r['dataset'])}, {r['full']['protocol']}): {_pm(r['full'])}.")
    protocols = sorted({r[k]["protocol"] for r in d for k in ("apm", "apm_hard")})
    lines += ["", "Distilled and random sets: " + "; ".join(protocols) + "."]
    return "\n".join(lines) + "\n"


def _vs(r: dict) -> str:
    """A row's difference to random under the same labels ("–" for the random row itself)."""
    return "–" if r["vs_random"] is None else f"{r['vs_random']:+.2f}"


def image_compare(d: dict) -> str:
    """Accuracy under both label modes, cross-architecture accuracy and build cost per method (bench_image_compare)."""
    rows = d["rows"]
    archs = sorted({r["arch"] for r in rows} - {"convnet"})
    cell = {(r["method"], r["ipc"], r["arch"], r["labels"]): r for r in rows}
    lines = [
        "| method | IPC | soft labels, L1 (%) | vs random | hard labels, CE (%) | vs random | "
        + "".join(f"{_ARCH_NAMES.get(a, a)}, soft | " for a in archs)
        + "build s | peak MB |",
        "|---|---|---|---|---|---|" + "---|" * len(archs) + "---|---|",
    ]
    keys = list(dict.fromkeys((r["method"], r["ipc"]) for r in rows))
    for method, ipc in sorted(keys, key=lambda k: k[1]):
        soft, hard = cell[(method, ipc, "convnet", "soft")], cell[(method, ipc, "convnet", "hard")]
        cross = "".join(
            f"{_pm(cell[(method, ipc, a, 'soft')])} | " if (method, ipc, a, "soft") in cell else "– | " for a in archs
        )
        lines.append(
            f"| {method} | {ipc} | {_pm(soft)} | {_vs(soft)} | {_pm(hard)} | "
            f"{_vs(hard)} | {cross}{soft['seconds']:.0f} | {soft['peak_mb']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def cross_arch_drop(d: dict) -> str:
    """Accuracy on ConvNet minus accuracy on other networks, soft labels (bench_image_compare)."""
    archs = list(dict.fromkeys(x["arch"] for x in d["cross_arch_drop"]))
    drops: dict[tuple, dict] = {}
    for x in d["cross_arch_drop"]:
        drops.setdefault((x["method"], x["ipc"]), {})[x["arch"]] = x["drop"]
    lines = [
        "| method | IPC | " + "".join(f"drop to {_ARCH_NAMES.get(a, a).split()[0]} | " for a in archs) + "mean drop |",
        "|---|---|" + "---|" * len(archs) + "---|",
    ]
    for (method, ipc), by in drops.items():
        cells = "".join(f"{by[a]:.2f} | " for a in archs)
        lines.append(f"| {method} | {ipc} | {cells}{sum(by.values()) / len(by):.2f} |")
    return "\n".join(lines) + "\n"


def time_to_accuracy(d: dict) -> str:
    """Accuracy of the copies taken during APM's and MTT's runs, and the time to equal accuracy."""
    copies: dict[str, list[dict]] = {"apm": [], "mtt": []}
    for r in d["curve"]:
        if r["labels"] == "soft":
            hard = next(x for x in d["curve"] if (x["method"], x["t"], x["labels"]) == (r["method"], r["t"], "hard"))
            copies[r["method"]].append({"t": r["t"], "s": r["seconds"], "soft": r, "hard": hard})
    lines = [
        "| APM t | APM distillation s | APM soft / hard (%) | MTT t | MTT distillation s | MTT soft / hard (%) |",
        "|---|---|---|---|---|---|",
    ]
    for k in range(max(len(c) for c in copies.values())):
        cells = []
        for method in ("apm", "mtt"):
            c = copies[method][k] if k < len(copies[method]) else None
            cells.append(f"{c['t']} | {c['s']:.0f} | {_pm(c['soft'])} / {_pm(c['hard'])}" if c else " | | ")
        lines.append(f"| {' | '.join(cells)} |")
    iters = f"APM {d['apm_iterations']} and MTT {d['mtt_iterations']} iterations"
    lines += ["", f"{_dataset(d['dataset'])}, IPC {d['ipc']}, {iters}; t = 0 is the initial real images.", ""]
    for s in d["summary"]:
        name = "Soft labels" if s["labels"] == "soft" else "Hard labels"
        if s["ratio_apm_over_mtt"] is None:
            lines.append(
                f"- {name}: target {s['target']:.2f} %, already reached by the initial real images (APM's best "
                f"{s['best']['apm']:.2f} %, MTT's {s['best']['mtt']:.2f} %): ratio undefined."
            )
        else:
            lines.append(
                f"- {name}: target {s['target']:.2f} % (the lower of APM's best {s['best']['apm']:.2f} and MTT's "
                f"{s['best']['mtt']:.2f}); APM reaches it after {s['apm_seconds']:.0f} s, MTT after "
                f"{s['mtt_seconds']:.0f} s: **ratio {s['ratio_apm_over_mtt']:.2f}**."
            )
    return "\n".join(lines) + "\n"


def batched_eval(d: dict) -> str:
    """Evaluation runs trained together vs one after another: seconds, parameter and accuracy agreement."""
    lines = [
        "| ConvNet width | IPC | one after another (s) | together (s) | speed-up | parameter difference, together "
        "vs one after another | the same, one thread vs two | test accuracy, one after another / together (%) "
        "| largest accuracy gap (points) | twins predicting the same class (%) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in d["cells"]:
        seq, bat = (" / ".join(f"{s:.1f}" for s in c["seconds"][m]) for m in ("sequential", "batched"))
        one = c.get("one_thread_param_diff")
        one_text = f"{one['max_rel_net']:.1e}" if one else "–"
        acc = [sum(c[k]) / len(c[k]) for k in ("acc_sequential", "acc_batched")]
        lines.append(
            f"| {c['width']} | {c['ipc']} | {seq} | {bat} | **{c['speedup']:.2f}×** | "
            f"{c['param_diff']['max_rel_net']:.1e} | {one_text} | "
            f"{acc[0]:.2f} / {acc[1]:.2f} | {c['max_acc_diff']:.2f} | {min(c['same_prediction_pct']):.1f} |"
        )
    load, prov = d["load_average_5min"], d["provenance"]
    lines += [
        "",
        f"{_dataset(d['dataset'])}, {d['runs']} runs per cell, {d['epochs']} epochs (hard labels, CE, DSA, batch 256), "
        f"{d['repeats']} interleaved repeats per mode (seconds listed per repeat; speed-up = ratio of the medians); "
        f"a parameter difference is ‖Δθ‖/‖θ‖ over all of a network's parameters after the last epoch, the largest "
        f"over the runs. "
        f"torch {prov['torch']}, {prov['cpu_threads']} threads on {d['cpu_count']} cores; 5-minute load average "
        f"{load['before']} at the start, {load['after']} at the end; {prov['finished_at'][:10]}.",
    ]
    profiled = [c for c in d["cells"] if "op_ms" in c]
    if profiled:
        ops = profiled[0]["op_ms"]
        names = list(dict.fromkeys(k for m in ops.values() for k in m if k != "total"))
        lines += [
            "",
            f"Where the time goes at width {profiled[0]['width']}, IPC {profiled[0]['ipc']} (self CPU ms per "
            "operator, torch profiler, one more training of each mode; operators missing from a mode's top list: –):",
            "",
            "| operator | one after another | together |",
            "|---|---|---|",
            *(f"| {n} | {_ms(ops['sequential'].get(n))} | {_ms(ops['batched'].get(n))} |" for n in [*names, "total"]),
        ]
    return "\n".join(lines) + "\n"


def _ms(x: float | None) -> str:
    return "–" if x is None else f"{x:.0f}"


def parallel_groups(d: dict) -> str:
    """One APM run against independently distilled groups merged to the same IPC (bench_parallel_groups)."""
    lines = [
        "| set | images | soft labels, L1 (%) | hard labels, CE (%) | distillation time per group (s) "
        "| parallel wall (s) |",
        "|---|---|---|---|---|---|",
    ]
    for r in d["rows"]:
        groups = ", ".join(f"{s:.1f}" for s in r["group_seconds"])
        lines.append(
            f"| {r['setting']} | {r['n_images']} | {_pm(r['soft'])} | {_pm(r['hard'])} | {groups} | "
            f"{r['parallel_wall_seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def compare_ranks(d: dict) -> str:
    """`distill image compare` on two torchrun processes against one process, same cores (bench_compare_ranks)."""
    lines = [
        "| setting | processes × threads | wall time per round (s) | median (s) | tables equal the 1-thread run |",
        "|---|---|---|---|---|",
    ]
    for name, s in d["settings"].items():
        walls = ", ".join(f"{w:.0f}" for w in s["wall_seconds"])
        same = "yes" if s["tables_equal_reference"] else "no"
        lines.append(
            f"| {name} | {s['processes']} × {s['threads_per_process']} | {walls} | {s['median_seconds']:.0f} | {same} |"
        )
    before, after = (", ".join(f"{x:.1f}" for x in d[k]) for k in ("load_average_before", "load_average_after"))
    lines += [
        "",
        f"Median wall time over two processes with 1 thread each: one process with 2 threads "
        f"**{d['ratio_one_process_over_two']:.2f}**, one process with 1 thread "
        f"**{d['ratio_one_thread_over_two']:.2f}** (above 1: the two processes finish first). "
        f"{d['table_rows']} table rows, {d['rounds']} interleaved rounds, "
        f"{d['cpu_count']} CPU cores; load average (1, 5, 15 min) {before} before and {after} after.",
    ]
    return "\n".join(lines) + "\n"


_LOGLIK_METHODS = {
    "ours": "ours (shared-context KV cache)",
    "naive": "naive per-option loop",
    "lm_eval": "lm-evaluation-harness",
    "floor": "floor: one forward pass over the unique tokens",
}


def dialogbench_loglik(d: dict) -> str:
    """Base-model scoring throughput and agreement: ours vs the naive loop vs lm-eval (bench_dialogbench_loglik)."""
    lines = ["| method | wall s | CPU s | instances/s | our speed-up (wall / CPU) |", "|---|---|---|---|---|"]
    for key, name in _LOGLIK_METHODS.items():
        if f"{key}_wall_s" not in d:
            continue
        if key == "floor":
            speedup = f"ours takes **{d['ours_over_floor_wall']:.2f}× / {d['ours_over_floor_cpu']:.2f}×** of it"
        else:
            speedup = (
                f"**{d[f'speedup_vs_{key}_wall']:.2f}× / {d[f'speedup_vs_{key}_cpu']:.2f}×**" if key != "ours" else "–"
            )
        lines.append(
            f"| {name} | {d[f'{key}_wall_s']:.1f} | {d[f'{key}_cpu_s']:.1f} | {d[f'{key}_inst_per_s']:.3f} | "
            f"{speedup} |"
        )
    lm_eval = f", lm-eval {d['lm_eval']}" if "lm_eval" in d else ""
    lines += [
        "",
        f"{Path(d['model']).name}, {d['dtype']}, {d['threads']} threads, batch size {d['batch_size']}; "
        f"{d['instances']} instances ({d['options']} options; contexts {d['context_tokens_mean']} and options "
        f"{d['option_tokens_mean']} tokens on average), {d['rounds']} round{'s' if d['rounds'] > 1 else ''}; "
        f"torch {d['torch']}{lm_eval}. 1-minute load average {d['load_average_at_start']} at the start, "
        f"{d['load_average_at_end']} at the end.",
        "",
        f"Agreement: per-token predictions equal the naive ones on {d['agree_token_vs_naive']} instances, "
        f"largest log-probability difference {d['max_abs_logprob_diff_vs_naive']:.1e}"
        + (
            f"; summed-log-likelihood predictions equal lm-eval's on {d['agree_sum_vs_lm_eval']}, largest "
            f"difference {d['max_abs_logprob_diff_vs_lm_eval']:.1e}"
            if "agree_sum_vs_lm_eval" in d
            else ""
        )
        + f". Per-token accuracy: {d['accuracy_token_ours']:.2f} %.",
    ]
    return "\n".join(lines) + "\n"


_EXTRACTOR_NAMES = {
    "strict": "strict",
    "lenient": "lenient (ours, default headline)",
    "anchored": "anchored",
    "original": "original DialogBench cascade",
}


def dialogbench_extraction(d: dict) -> str:
    """Answer-extraction accuracy and errors on the labelled and held-out outputs (bench_dialogbench_extraction)."""
    sets = {"cases": "cases", "heldout": "held-out"}
    head = "".join(
        f"{n}: accuracy | {n}: wrong letter (another letter / where none) | {n}: missed | " for n in sets.values()
    )
    lines = [f"| extractor | {head}".rstrip(), "|---|" + "---|---|---|" * len(sets)]
    for key, name in _EXTRACTOR_NAMES.items():
        cells = ""
        for s in sets:
            r = d[s][key]
            acc = f"**{r['accuracy']:.1f} %**" if key == "lenient" else f"{r['accuracy']:.1f} %"
            cells += (
                f"{acc} | {r['wrong_letter']} ({r['other_letter']} / {r['letter_for_no_answer']}) | {r['missed']} | "
            )
        lines.append(f"| {name} | {cells}".rstrip())
    lines.append("")
    lines.append(
        "; ".join(
            f"{name}: {d[s]['n']} outputs ({d[s]['n_en']} English, {d[s]['n'] - d[s]['n_en']} Chinese; "
            f"{d[s]['n_no_answer']} with no answer)"
            for s, name in sets.items()
        )
        + "."
    )
    return "\n".join(lines) + "\n"


def _letters(counts: dict) -> str:
    return "/".join(str(counts.get(k, 0)) for k in "ABCD")


def dialogbench_demo(d: dict) -> str:
    """The DialogBench demo section's time and results, base and chat mode (bench_dialogbench_demo)."""
    lines = [
        "| mode | headline | overall (95 % CI) | every scoring | evaluation s | predicted A/B/C/D | no answer "
        "| gold A/B/C/D |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode in ("base", "chat"):
        m = d[mode]
        others = ", ".join(
            f"{k.removeprefix('overall_')} {v:.2f}"
            for k, v in sorted(m.items())
            if k.startswith("overall_") and not isinstance(v, list)
        )
        ci = f" ({m['overall_ci95'][0]:.2f}–{m['overall_ci95'][1]:.2f})" if "overall_ci95" in m else ""
        pred = m["letters"]["predicted"]
        lines.append(
            f"| {mode} | {m['headline']} | {m['overall']:.2f}{ci} | {others} | {m['seconds']:.0f} | {_letters(pred)} | "
            f"{pred.get('none', 0)} | {_letters(m['letters']['gold'])} |"
        )
    lines += [
        "",
        f"{d['base']['n_items']} instances. The whole demo section: {d['wall_s']:.0f} s wall, {d['user_cpu_s']:.0f} s "
        f"user CPU; 1-minute load average {d['load_average_at_start']} at the start, {d['load_average_at_end']} at "
        "the end.",
    ]
    return "\n".join(lines) + "\n"


def _pvalue(p: float) -> str:
    return f"{p:.0e}" if p < 1e-3 else f"{p:.6f}" if p > 0.99 else f"{p:.2f}"


def dialogbench_generate_throughput(d: dict) -> str:
    """Generation requests per second against the replay server by latency and concurrency."""
    runs = {(r["delay_s"], r["concurrency"]): r for r in d["throughput"]}
    concurrencies = sorted({c for _, c in runs})
    lines = [
        "| emulated server latency | " + " | ".join(f"concurrency {c}" for c in concurrencies) + " |",
        "|---|" + "---|" * len(concurrencies),
    ]
    for delay in sorted({dl for dl, _ in runs}):
        base = runs[(delay, concurrencies[0])]["requests_per_s"]
        cells = []
        for c in concurrencies:
            rate = runs[(delay, c)]["requests_per_s"]
            cells.append(f"{rate:.1f} req/s" + (f", {rate / base:.1f}×" if c != concurrencies[0] else ""))
        lines.append(f"| {1000 * delay:.0f} ms | " + " | ".join(cells) + " |")
    first = runs[(0.0, concurrencies[0])]
    lines += [
        "",
        f"{first['requests']} requests per run. At 0 ms latency and concurrency {concurrencies[0]} the client side "
        f"costs {1000 / first['requests_per_s']:.0f} ms per request. 1-minute load average "
        f"{d['load_average_at_start']} at the start of the script (these runs come first), "
        f"{d['load_average_at_end']} at its end.",
    ]
    return "\n".join(lines) + "\n"


def dialogbench_generate_balance(d: dict) -> str:
    """Answer-position and domain balance, and rejection shares, of a generated set (bench_dialogbench_generate)."""
    on, off = d["balanced"], d["position_balance_off"]

    def planned(r: dict) -> str:
        return "chosen by the model" if "llm" in r["planned_letters"] else _letters(r["planned_letters"])

    def per_domain(r: dict) -> str:
        counts = r["planned_domain_counts"]
        return f"{counts[0]} each" if len(counts) == 1 else f"{min(counts)}-{max(counts)}"

    rows = [
        ("planned gold letters A/B/C/D", planned),
        ("accepted", lambda r: f"{r['accepted']} of {r['planned']}"),
        (
            "accepted gold letters A/B/C/D",
            lambda r: f"{_letters(r['accepted_letters'])}, chi-square p = {_pvalue(r['accepted_letters_p'])}",
        ),
        ("planned per domain", per_domain),
        (
            "accepted per domain (min-max)",
            lambda r: (
                f"{r['accepted_domain_min_max'][0]}-{r['accepted_domain_min_max'][1]}, chi-square p = "
                f"{_pvalue(r['accepted_domains_p'])}"
            ),
        ),
        ("replies repaired after the first answer", lambda r: f"{r['repaired_share']:.2f} %"),
        ("rejected (all checks, share of planned)", lambda r: f"{r['rejected_total_share']:.2f} %"),
        (
            "rejected because the judge picked another letter",
            lambda r: f"{r['rejected_share_of_planned'].get('judge_wrong', 0.0):.2f} %",
        ),
        (
            "requests (first answers / blind judge answers / transport retries)",
            lambda r: f"{r['requests']} ({r['planned']} / {r['judged']} / {r['retries']})",
        ),
    ]
    lines = ["| | position balancing on | off (model places the gold) |", "|---|---|---|"]
    lines += [f"| {name} | {cell(on)} | {cell(off)} |" for name, cell in rows]
    shares = sorted(on["rejected_share_of_planned"].items(), key=lambda kv: -kv[1])
    lines += [
        "",
        f"Share of the {on['planned']} planned instances rejected by each check (balancing on): "
        + ", ".join(f"{k.replace('_', ' ')} {v:.2f} %" for k, v in shares)
        + f"; {on['rejected_total_share']:.2f} % in all.",
    ]
    return "\n".join(lines) + "\n"


def serve_chat(d: dict) -> str:
    """Chat mode through `transformers serve`: dialogbench eval vs lm-eval (bench_dialogbench_serve_chat)."""

    def secs(xs: list[float]) -> str:
        return ", ".join(f"{x:.0f}" for x in xs)

    lines = [
        "| concurrency (distillkit / lm-eval) | distillkit wall s | lm-eval wall s | lm-eval / distillkit | "
        "time the tools report, distillkit / lm-eval (s) | accuracy distillkit / lm-eval | identical answers "
        "(both answered) | identical replies |",
        "|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for p in d["pairs"]:
        a = p["agreement"]
        pair = f"{p['distillkit_concurrency']} / {p['lm_eval_concurrency']}"
        lines.append(
            f"| {pair} | {secs(p['distillkit_wall_s'])} | {secs(p['lm_eval_wall_s'])} | "
            f"{p['lm_eval_over_distillkit_wall']:.2f} | {secs(p['distillkit_tool_s'])} / {secs(p['lm_eval_tool_s'])} | "
            f"{p['distillkit_overall'][0]:.2f} / {p['lm_eval_overall'][0]:.2f} | "
            f"{a['identical_answers']} of {a['both_answered']} | {a['identical_replies']} of {a['items']} |"
        )
        notes += [
            f"{x['id']} ({pair}): distillkit {x['distillkit'] or 'none'}, lm-eval {x['lm_eval'] or 'none'} ({x['why']})"
            for x in a["disagreements"]
        ]
    load = d["load_average_5min"]
    lines += [
        "",
        f"{d['data']}, {d['rounds']} rounds (times per round, in run order); {d['decoding']}; extractor "
        f"{d['extractor']}. Disagreements: {'; '.join(notes) if notes else 'none'} (the items not counted as both "
        f"answered lack an answer on at least one side). Replies identical across rounds: "
        f"{'yes' if d['replies_stable_across_rounds'] else 'no'}. Server start to `/health`: "
        f"{d['server_startup_s']:.0f} s; lm-eval ran with `--gen_kwargs {d['lm_eval_gen_kwargs']}`; "
        f"5-minute load average {load['before']} before, {load['after']} after; {d['date']}.",
    ]
    return "\n".join(lines) + "\n"


def _teacher_view(s: dict) -> str:
    return f"{s['teacher_ce']:.2f} / {s['teacher_acc']:.0f} % / {s['teacher_margin']:.2f}"


def apm_drift(d: dict) -> str:
    """How far APM moved its images from the real ones they started from (bench_apm_drift)."""
    lo, hi = d["rows"][0]["real_range"]
    lines = [
        f"| run | IPC | T / E / K | lr_img | distilled pixel range (real: {lo:.2f} to {hi:.2f}) | pixels outside the "
        "real range | L2 from the initial images (relative) | teacher CE / accuracy / margin on the initial images "
        "| on the distilled images | discrepancy, first → last 50 updates | α·CE term's CE, first → last |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in d["rows"]:
        i, x, a, b = r["initial"], r["distilled"], r["loss_first"], r["loss_last"]
        lines.append(
            f"| {r['run']} | {r['ipc']} | {r['iterations']} / {r['student_epochs']} / {r['num_checkpoints']} | "
            f"{r['lr_img']:g} | {x['min']:.2f} to {x['max']:.2f} | {r['outside_real_range']:.1f} % | "
            f"{r['relative_l2_from_initial']:.2f} | {_teacher_view(i)} | {_teacher_view(x)} | "
            f"{a['discrepancy']:.2f} → {b['discrepancy']:.2f} | "
            f"{a['ce']:.2f} → {b['ce']:.2f} |"
        )
    return "\n".join(lines)


def demo_time(d: dict) -> str:
    """`distill demo`'s wall time and section times (bench_demo)."""
    lines = ["| section | seconds |", "|---|---|"]
    lines += [f"| {title} | {seconds} |" for title, seconds in d["sections_seconds"].items()]
    lines += [
        f"| **whole demo (wall)** | **{d['wall_seconds']:.0f}** ({d['wall_seconds'] / 60:.1f} min) |",
        "",
        f"{d['cpu_count']} CPUs; 1-minute load average {d['load_at_start']} at the start, "
        f"{d['load_at_end']} at the end.",
    ]
    return "\n".join(lines)


RENDERERS: dict[str, tuple[str, Callable[[dict], str]]] = {
    "dialogbench-loglik": ("dialogbench_loglik.json", dialogbench_loglik),
    "dialogbench-demo": ("dialogbench_demo.json", dialogbench_demo),
    "demo-time": ("demo_time.json", demo_time),
    "dialogbench-generate-throughput": ("dialogbench_generate.json", dialogbench_generate_throughput),
    "dialogbench-generate-balance": ("dialogbench_generate.json", dialogbench_generate_balance),
    "dialogbench-extraction": ("dialogbench_extraction.json", dialogbench_extraction),
    "dialogbench-loglik-tiny": ("dialogbench_loglik_tiny.json", dialogbench_loglik),
    "apm-memory-mnist": ("apm_memory_mnist.json", apm_memory),
    "apm-vs-mtt": ("apm_vs_mtt.json", apm_vs_mtt),
    "apm-accuracy-fashion-mnist": ("apm_accuracy_quick_fashion_mnist.json", apm_accuracy),
    "image-compare-mnist": ("image_compare_mnist_quick.json", image_compare),
    "image-compare-mnist-ipc50": ("image_compare_mnist_quick_ipc50.json", image_compare),
    "image-compare-mnist-drop": ("image_compare_mnist_quick.json", cross_arch_drop),
    "image-compare-digits-published-ipc1": ("image_compare_digits_published_ipc1.json", image_compare),
    "image-compare-digits-published-ipc10": ("image_compare_digits_published_ipc10.json", image_compare),
    "time-to-accuracy-mnist": ("time_to_accuracy_mnist_quick_ipc10.json", time_to_accuracy),
    "time-to-accuracy-mnist-x3": ("time_to_accuracy_mnist_x3_ipc10.json", time_to_accuracy),
    "batched-eval": ("batched_eval.json", batched_eval),
    "parallel-groups": ("parallel_groups.json", parallel_groups),
    "compare-ranks": ("compare_ranks.json", compare_ranks),
    "soft-label-protocol-digits": ("soft_label_protocol_digits.json", soft_label_protocol),
    "apm-vs-random-digits": ("apm_vs_random_digits.json", apm_vs_random),
    "apm-drift-digits": ("apm_drift_digits.json", apm_drift),
    "dilm-stage2": ("dilm_stage2_scratch.json", dilm_stage2),
    "dilm-fixed": ("dilm_fine_foods_fixed.json", dilm_bench),
    "dilm-class-tokens-x100": ("dilm_fine_foods_class_tokens_x100.json", dilm_bench),
    "mistakes": ("mistakes.json", mistakes),
    "kill-resume": ("kill_resume.json", kill_resume),
    "hanging-server": ("hanging_server.json", hanging_server),
    "dialogbench-server-base": ("dialogbench_server_base.json", server_base),
    "dialogbench-serve-chat": ("dialogbench_serve_chat.json", serve_chat),
}


def render_block(name: str) -> str:
    if name not in RENDERERS:
        raise SystemExit(f"docs/benchmarks.md names renderer {name!r}, which bench/render.py does not have")
    file, fn = RENDERERS[name]
    return fn(json.loads((RESULTS / file).read_text())) + "\n"


def render(text: str) -> tuple[str, list[str]]:
    """The document with every block re-rendered, and the names of the blocks that changed."""
    changed: list[str] = []

    def sub(m: re.Match) -> str:
        body = render_block(m["name"])
        if body != m["body"]:
            changed.append(m["name"])
        return m.group(1) + body + m.group(4)

    return BLOCK.sub(sub, text), changed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="only compare; exit 1 if a block differs")
    args = p.parse_args()
    new, changed = render(DOC.read_text())
    if args.check:
        if changed:
            print(f"docs/benchmarks.md differs from its JSON in: {', '.join(changed)}; run python bench/render.py")
            sys.exit(1)
        return
    DOC.write_text(new)
    print(f"rendered {len(BLOCK.findall(new))} blocks, {len(changed)} changed")


if __name__ == "__main__":
    main()
