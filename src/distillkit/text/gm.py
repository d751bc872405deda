"""Stage 2: gradient matching of the learner's head between real and generated text.

Per generator step and class c:
  g_real = mean over a representative real batch of the per-sample head gradients   (constant)
  w      = softmax(-ℓ/τ) over the generated batch, ℓ = per-sample generator LM loss    (differentiable in φ)
  g_syn  = Σ_i w_i g_i, g_i = per-sample head gradient of generated text i            (constant)
  loss  += (1 - cos(g_real, g_syn)) / |C|
Head gradients come from cached head-input features (`head_grad="closed_form"`); `"autograd"` runs
autograd through full learner forward passes instead (same value, slower; kept for checks and timing).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict

from distillkit.coresets import kmeans_medoid, per_class
from distillkit.data.text import TextDataset
from distillkit.progress import progress as progress_bar
from distillkit.seeding import derive_seed, numpy_rng, seed32
from distillkit.text.generator import Generator
from distillkit.text.learner import Learner
from distillkit.text.train_utils import adamw, cosine, load_checkpoint, save_checkpoint


class GMConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outer_loops: int = 2000
    inner_loops: int = 10
    learner_steps: int = 20
    syn_batch: int = 64
    real_batch: int = 200
    rt_sets: int = 10
    representative_teacher: bool = True
    diverse_minibatch: bool = True
    dms_interval: int = 20
    lr: float = 3e-7
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    clip: float = 1.0
    tau: float = 1.0
    learner_lr: float = 1e-4
    learner_batch: int = 64
    learner_warmup_ratio: float = 0.5
    head_grad: str = "closed_form"
    learner_train_body: bool = True  # False: learner steps train the head only (frozen pretrained body)
    generator_dropout: bool = True  # faithful: the generator stays in train mode when computing ℓ
    checkpoint_every: int = 20
    class_token_lr_mult: float = 1.0  # the class tokens' learning rate = lr x this


def build_representative_teacher(emb: np.ndarray, labels: np.ndarray, k: int, sets: int) -> list[dict[int, np.ndarray]]:
    """R_t[c] = K-means medoids (K = k) of class c's real embeddings with seed t, for t < sets."""
    return [per_class(labels, lambda rows, t=t: kmeans_medoid(emb[rows], k, t)) for t in range(sets)]


def diverse_batches(emb: np.ndarray, batch: int, n_batches: int, seed: int) -> list[np.ndarray]:
    """Cluster a pool into `batch` K-means clusters; batch j takes member j mod size of each."""
    from sklearn.cluster import KMeans

    k = min(batch, len(emb))
    lab = KMeans(n_clusters=k, n_init=1, random_state=seed32(seed)).fit(emb).labels_
    clusters = [np.flatnonzero(lab == c) for c in range(k)]
    clusters = [c for c in clusters if len(c)]
    return [np.asarray([c[j % len(c)] for c in clusters]) for j in range(n_batches)]


def head_gradients(
    learner: Learner,
    c: int,
    real: list[tuple[str, ...]],
    syn: list[tuple[str, ...]],
    w: torch.Tensor,
    head_grad: str = "closed_form",
    real_feats: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """g_real (constant) and g_syn = Σ_i w_i g_i (differentiable in `w`) of the learner's head for class c."""
    y_real = torch.full((len(real),), c, dtype=torch.long, device=learner.device)
    y_syn = torch.full((len(syn),), c, dtype=torch.long, device=learner.device)
    if head_grad == "closed_form":
        feats = learner.features(real) if real_feats is None else real_feats
        g_real = learner.per_sample_head_grads(feats, y_real).mean(0)
        g_syn = w @ learner.per_sample_head_grads(learner.features(syn), y_syn)
    elif head_grad == "autograd":
        g_real = learner.autograd_head_grad(real, y_real).detach()
        g_syn = learner.autograd_head_grad(syn, y_syn, weights=w, create_graph=True)
    else:
        raise ValueError(f"head_grad must be 'closed_form' or 'autograd', not {head_grad!r}")
    return g_real, g_syn


def matching_loss(
    gen: Generator,
    learner: Learner,
    c: int,
    real: list[tuple[str, ...]],
    syn: list[tuple[str, ...]],
    num_classes: int,
    tau: float = 1.0,
    head_grad: str = "closed_form",
    real_feats: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(1 - cos(g_real, g_syn)) / |C| for class c, differentiable in the generator's parameters.

    `real_feats`: precomputed head-input features of `real` (closed form only; frozen-body learners).
    """
    ell = gen.per_sample_loss(syn, [c] * len(syn))
    w = F.softmax(-ell / tau, dim=0)
    g_real, g_syn = head_gradients(learner, c, real, syn, w, head_grad, real_feats)
    loss = (1 - F.cosine_similarity(g_real, g_syn, dim=0)) / num_classes
    return loss, {"weights": w.detach(), "g_real": g_real.detach(), "g_syn": g_syn.detach()}


class GradientMatcher:
    """Runs stage 2 on a generator in place, with checkpoints at outer-loop boundaries."""

    def __init__(
        self,
        gen: Generator,
        learner: Learner,
        train: TextDataset,
        real_emb: np.ndarray,
        cfg: GMConfig,
        seed: int,
    ):
        self.gen, self.learner, self.train, self.cfg, self.seed = gen, learner, train, cfg, seed
        self.C = train.num_classes
        self.rt = (
            build_representative_teacher(real_emb, train.labels, cfg.real_batch, cfg.rt_sets)
            if cfg.representative_teacher
            else None
        )
        self.opt = adamw(gen.model, cfg.lr, cfg.weight_decay)
        total = cfg.outer_loops * cfg.inner_loops
        self.sched = cosine(self.opt, total, cfg.warmup_ratio)
        self.step, self.ol = 0, 0
        self.dms: dict[int, list[list[tuple[str, ...]]]] = {}
        self.history: list[dict[str, Any]] = []
        self.labels = torch.as_tensor(train.labels, device=learner.device)  # on the learner's device once

    # ---- batches ----------------------------------------------------------------------------------
    def real_indices(self, c: int) -> np.ndarray:
        if self.rt is not None:
            return self.rt[self.step % len(self.rt)][c]
        rng = numpy_rng(self.seed, "gm_real_batch", self.step, c)
        pool = np.flatnonzero(self.train.labels == c)
        return rng.choice(pool, size=min(self.cfg.real_batch, len(pool)), replace=False)

    def real_batch(self, c: int) -> list[tuple[str, ...]]:
        return [self.train.texts[i] for i in self.real_indices(c)]

    def frozen_features(self) -> torch.Tensor | None:
        """Pretrained-body features of all real texts when the learner body is frozen (else None)."""
        if self.cfg.learner_train_body:
            return None
        return self.learner.cached_features(self.train.texts)

    def rebuild_dms(self) -> None:
        """Sample a pool per class and cut it into diverse batches (embedded by the freshly reset learner)."""
        n_batches = self.cfg.dms_interval * self.cfg.inner_loops
        for c in range(self.C):
            pool = self.gen.sample(
                c, self.cfg.syn_batch * n_batches, seed=derive_seed(self.seed, "gm_pool", self.ol, c)
            )
            emb = self.learner.features(pool).float().cpu().numpy()
            batches = diverse_batches(
                emb, self.cfg.syn_batch, n_batches, derive_seed(self.seed, "gm_diverse", self.ol, c)
            )
            self.dms[c] = [[pool[i] for i in b] for b in batches]

    def syn_batch(self, c: int) -> list[tuple[str, ...]]:
        if self.cfg.diverse_minibatch:
            j = (self.ol % self.cfg.dms_interval) * self.cfg.inner_loops + self.step % self.cfg.inner_loops
            return self.dms[c][j]
        return self.gen.sample(c, self.cfg.syn_batch, seed=derive_seed(self.seed, "gm_syn_batch", self.step, c))

    # ---- learner ----------------------------------------------------------------------------------
    def learner_steps(self, opt, sched, inner: int) -> None:
        model = self.learner.model
        for k in range(self.cfg.learner_steps):
            rng = numpy_rng(self.seed, "gm_teacher_set", self.step, inner, k)
            idx = rng.choice(len(self.train), size=min(self.cfg.learner_batch, len(self.train)), replace=False)
            feats = self.frozen_features()
            if feats is None:
                logits, _ = self.learner.forward([self.train.texts[i] for i in idx])
            else:
                logits = self.learner.head(feats[idx])
            loss = F.cross_entropy(logits, self.labels[torch.as_tensor(idx, device=self.labels.device)])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()

    # ---- checkpoints ------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "model": self.gen.state_dict(),
            "opt": self.opt.state_dict(),
            "sched": self.sched.state_dict(),
            "step": self.step,
            "ol": self.ol,
            "dms": self.dms,
            "history": self.history,
        }

    def load_state(self, s: dict[str, Any]) -> None:
        self.gen.load_state_dict(s["model"])
        self.opt.load_state_dict(s["opt"])
        self.sched.load_state_dict(s["sched"])
        self.step, self.ol, self.dms, self.history = s["step"], s["ol"], s["dms"], s["history"]

    # ---- main loop --------------------------------------------------------------------------------
    def run(
        self,
        ckpt: Path | None = None,
        progress: bool = True,
        stop_after: int | None = None,
        on_outer: Any = None,
    ) -> list[dict[str, Any]]:
        """Train; resume from `ckpt` if present. `stop_after` outer loops ends early (for tests of resume).

        `on_outer(matcher)` is called after every outer loop (validation hooks).
        """
        cfg = self.cfg
        state = load_checkpoint(ckpt) if ckpt else None
        if state is not None:
            self.load_state(state)
        bar = progress_bar(
            None, "stage 2 (GM)", total=cfg.outer_loops * cfg.inner_loops, disable=not progress, initial=self.step
        )
        done_now = 0
        while self.ol < cfg.outer_loops:
            self.learner.reset(derive_seed(self.seed, "gm_learner_reset", self.ol))
            if cfg.diverse_minibatch and self.ol % cfg.dms_interval == 0:
                self.rebuild_dms()
            trainable = self.learner.model if cfg.learner_train_body else self.learner.head_params()
            opt_l = adamw(trainable, cfg.learner_lr, 0.01)
            sched_l = cosine(opt_l, cfg.inner_loops * cfg.learner_steps, cfg.learner_warmup_ratio)
            for inner in range(cfg.inner_loops):
                t0 = time.perf_counter()
                self.gen.model.train(cfg.generator_dropout)
                self.opt.zero_grad(set_to_none=True)
                total = torch.zeros((), device=self.learner.device)
                for c in range(self.C):
                    torch.manual_seed(derive_seed(self.seed, "gm_dropout", self.step, c))
                    idx = self.real_indices(c)
                    frozen = self.frozen_features()
                    loss, _ = matching_loss(
                        self.gen,
                        self.learner,
                        c,
                        [self.train.texts[i] for i in idx],
                        self.syn_batch(c),
                        self.C,
                        cfg.tau,
                        cfg.head_grad,
                        real_feats=None if frozen is None or cfg.head_grad != "closed_form" else frozen[idx],
                    )
                    loss.backward()
                    total += loss.detach()
                total = total.item()  # one device sync per step, not one per class
                torch.nn.utils.clip_grad_norm_(self.gen.model.parameters(), cfg.clip)
                with self.gen.class_token_lr(cfg.class_token_lr_mult):
                    self.opt.step()
                self.sched.step()
                self.history.append({"step": self.step, "loss": total, "seconds": time.perf_counter() - t0})
                self.step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{total:.4f}")
                if inner < cfg.inner_loops - 1 and cfg.learner_steps:
                    self.learner_steps(opt_l, sched_l, inner)
            self.ol += 1
            done_now += 1
            if on_outer is not None:
                on_outer(self)
            if ckpt and (self.ol % cfg.checkpoint_every == 0 or self.ol == cfg.outer_loops):
                save_checkpoint(ckpt, self.state())
            if stop_after is not None and done_now >= stop_after:
                if ckpt:
                    save_checkpoint(ckpt, self.state())
                break
        bar.close()
        self.learner.set_mode()
        return self.history
