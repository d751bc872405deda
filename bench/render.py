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
        "| dataset | IPC | schedule | labels | APM | random (± std over draws) | APM − random ± 2 std | verdict "
        "| APM's initial images | APM − its initial images | APM fit | proxy fit |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in d["rows"]:
        g = r["gain"]
        verdict = ("gain" if g["value"] > 0 else "loss") if g["significant"] else "within noise"
        lines.append(
            f"| {r['dataset']} | {r['ipc']} | {r['schedule']} | {r['labels']} | {_pm(r['apm'])} | {_pm(r['random'])} | "
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


RENDERERS: dict[str, tuple[str, Callable[[dict], str]]] = {
    "soft-label-protocol-digits": ("soft_label_protocol_digits.json", soft_label_protocol),
    "apm-vs-random-digits": ("apm_vs_random_digits.json", apm_vs_random),
    "dilm-stage2": ("dilm_stage2_scratch.json", dilm_stage2),
    "mistakes": ("mistakes.json", mistakes),
    "kill-resume": ("kill_resume.json", kill_resume),
    "hanging-server": ("hanging_server.json", hanging_server),
    "dialogbench-server-base": ("dialogbench_server_base.json", server_base),
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
