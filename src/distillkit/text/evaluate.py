"""The evaluator: fine-tune fresh learners on a small set, R runs, and test on real data.

Every method (DiLM, vanilla LM, coresets, full data) goes through the same function. Model selection
(best step by validation accuracy) uses the validation split only; the test split is scored once per run.
Under torchrun `distill text eval` shares the runs over the processes (`distributed.share_map`), each run seeded
by its own seed.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict

from distillkit.data.text import TextDataset
from distillkit.seeding import derive_seed, numpy_rng
from distillkit.text.learner import Learner
from distillkit.text.train_utils import adamw, cosine


class FinetuneConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int = 100
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    select_every: int = 0  # > 0: evaluate on validation every N steps and keep the best weights
    train_body: bool = True  # False: the pretrained body stays frozen and only the head is trained


def scores(pred: np.ndarray, gold: np.ndarray, metric: str = "accuracy") -> dict[str, float]:
    """Accuracy (%), macro-F1 (%) and, for QQP-style tasks, binary F1 and combined score."""
    from sklearn.metrics import f1_score

    out = {
        "accuracy": 100.0 * float((pred == gold).mean()),
        "macro_f1": 100.0 * float(f1_score(gold, pred, average="macro", zero_division=0)),
    }
    if metric == "combined_score":
        out["f1"] = 100.0 * float(f1_score(gold, pred, zero_division=0))
        out["combined_score"] = (out["accuracy"] + out["f1"]) / 2
    return out


def _batches(n: int, batch_size: int, steps: int, seed: int):
    """Shuffled epochs of indices, cut into `steps` batches."""
    rng = numpy_rng(seed, "finetune_order")
    order: list[int] = []
    for _ in range(steps):
        if len(order) < min(batch_size, n):
            order += rng.permutation(n).tolist()
        idx, order = order[:batch_size], order[batch_size:]
        yield idx


def finetune(
    learner: Learner,
    train: TextDataset,
    cfg: FinetuneConfig,
    seed: int,
    validation: TextDataset | None = None,
) -> dict[str, float]:
    """Reset `learner` (pretrained body, fresh head) and fine-tune it in place on `train`."""
    learner.reset(derive_seed(seed, "finetune_init"))
    model = learner.model
    params = model if cfg.train_body else learner.head_params()
    opt = adamw(params, cfg.lr, cfg.weight_decay)
    sched = cosine(opt, cfg.steps, cfg.warmup_ratio)
    best: tuple[float, int, dict | None] = (-1.0, 0, None)
    feats = None if cfg.train_body else learner.cached_features(train.texts)
    labels = torch.as_tensor(train.labels, device=learner.device)
    for step, idx in enumerate(_batches(len(train), cfg.batch_size, cfg.steps, seed)):
        torch.manual_seed(derive_seed(seed, "finetune_dropout", step))
        if feats is None:
            logits, _ = learner.forward([train.texts[i] for i in idx])
        else:
            logits = learner.head(feats[idx])
        loss = F.cross_entropy(logits, labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        done = step + 1
        if validation is not None and cfg.select_every and (done % cfg.select_every == 0 or done == cfg.steps):
            acc = float((predict(learner, validation, cfg) == validation.labels).mean())
            if acc > best[0]:
                best = (acc, done, copy.deepcopy(model.state_dict()))
    if best[2] is not None:
        model.load_state_dict(best[2])
        return {"selected_step": best[1], "validation_accuracy": 100.0 * best[0]}
    return {"selected_step": cfg.steps}


def predict(learner: Learner, ds: TextDataset, cfg: FinetuneConfig) -> np.ndarray:
    """Predicted classes; with a frozen body the (cached) pretrained features go through the trained head."""
    if cfg.train_body:
        return learner.predict(ds.texts)
    with torch.no_grad():
        return learner.head(learner.cached_features(ds.texts)).argmax(-1).cpu().numpy()


def evaluate_set(
    learner: Learner,
    small: TextDataset,
    test: TextDataset,
    cfg: FinetuneConfig,
    seeds: list[int],
    validation: TextDataset | None = None,
) -> list[dict[str, float]]:
    """One fresh fine-tune per seed on `small`; test scores per run."""
    runs = []
    for s in seeds:
        info = finetune(learner, small, cfg, s, validation)
        res = scores(predict(learner, test, cfg), test.labels, test.metric)
        runs.append({**res, **info, "seed": s})
    return runs


def summarize(runs: list[dict[str, float]], key: str = "accuracy") -> dict[str, float]:
    vals = np.asarray([r[key] for r in runs], dtype=float)
    return {"mean": float(vals.mean()), "std": float(vals.std(ddof=0)), "n": len(vals)}
