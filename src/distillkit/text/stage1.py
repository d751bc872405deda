"""Stage 1: fine-tune the class-conditional generator on real data (mean per-sample LM loss)."""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict

from distillkit.data.text import TextDataset
from distillkit.progress import progress as progress_bar
from distillkit.seeding import derive_seed, numpy_rng
from distillkit.text.generator import Generator
from distillkit.text.train_utils import adamw, cosine, load_checkpoint, save_checkpoint

LOSS_READ_EVERY = 50


class Stage1Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int = 80_000
    batch_size: int = 64
    lr: float = 1e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    clip: float = 1.0
    checkpoint_every: int = 5_000
    class_token_lr_mult: float = 1.0  # the class tokens' learning rate = lr x this


def train_stage1(
    gen: Generator,
    train: TextDataset,
    cfg: Stage1Config,
    seed: int,
    ckpt: Path | None = None,
    progress: bool = True,
) -> list[float]:
    """Train `gen` in place; resumes from `ckpt` if it exists and saves it every `checkpoint_every` steps.

    Batches and dropout are drawn from seeds derived from (seed, step), so a resumed run is identical.
    Step losses stay on the device and are read back every `LOSS_READ_EVERY` steps (one sync, not one a step).
    """
    opt = adamw(gen.model, cfg.lr, cfg.weight_decay)
    sched = cosine(opt, cfg.steps, cfg.warmup_ratio)
    start, losses = 0, []
    state = load_checkpoint(ckpt) if ckpt else None
    if state is not None:
        gen.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start, losses = state["step"], state["losses"]
    gen.model.train()
    pending: list[torch.Tensor] = []
    bar = progress_bar(range(start, cfg.steps), "stage 1 (LM)", total=cfg.steps, disable=not progress, initial=start)
    for step in bar:
        rng = numpy_rng(seed, "stage1_batch", step)
        idx = rng.choice(len(train), size=min(cfg.batch_size, len(train)), replace=False)
        torch.manual_seed(derive_seed(seed, "stage1_dropout", step))
        loss = gen.per_sample_loss([train.texts[i] for i in idx], train.labels[idx]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(gen.model.parameters(), cfg.clip)
        with gen.class_token_lr(cfg.class_token_lr_mult):
            opt.step()
        sched.step()
        pending.append(loss.detach())
        done = step + 1
        save = bool(ckpt) and (done % cfg.checkpoint_every == 0 or done == cfg.steps)
        if save or done % LOSS_READ_EVERY == 0 or done == cfg.steps:
            losses += torch.stack(pending).tolist()
            pending.clear()
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if save:
            save_checkpoint(
                ckpt,
                {
                    "model": gen.state_dict(),
                    "opt": opt.state_dict(),
                    "sched": sched.state_dict(),
                    "step": done,
                    "losses": losses,
                },
            )
    return losses
