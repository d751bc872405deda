"""The generator: a causal LM made class-conditional with one added prompt token per class.

Encoding of a training example: `<bos_c>`, a space, the fields joined by ` <sep> `, a space, end-of-text.
Each `<bos_c>` starts as a copy of the end-of-text embedding. Per-sample loss = summed token
cross-entropy (pads ignored) divided by (padded length - 1) (`padded`, as the reference) or by the
sample's own number of predicted tokens (`true_length`).

With `lora` settings a pretrained generator trains LoRA adapters (peft) and the rows of the added tokens
only, and saves just those (a few MB): loading rebuilds the base model and its added tokens from the
name and seed, then applies the adapter.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from distillkit.devices import autocast, check_precision
from distillkit.errors import UserError
from distillkit.lm.hf import load_causal_lm
from distillkit.progress import progress as progress_bar
from distillkit.runs import atomic_path
from distillkit.seeding import derive_seed, seeded
from distillkit.text.models import SCRATCH_GENERATOR, load_generator_lm

SEP = "<sep>"
META = "distillkit_generator.json"


class LoraSettings(BaseModel):
    """LoRA adapters on a pretrained generator: stages 1 and 2 train these and the added token rows only."""

    model_config = ConfigDict(extra="forbid")
    r: int = Field(8, ge=1)
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: list[str] = ["q_proj", "v_proj"]


def class_token(c: int) -> str:
    return f"<bos_{c}>"


class Generator:
    """A class-conditional text generator around any Hugging Face causal LM.

    `precision="bf16"` runs the LM (loss and sampling) under bfloat16 autocast; the loss itself is float32.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        num_classes: int,
        num_fields: int = 1,
        max_length: int = 64,
        normalize: str = "padded",
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        origin: dict | None = None,
    ):
        self.origin = origin  # LoRA generators: {"base", "seed", "lora"}, what `load` rebuilds them from
        self.precision = check_precision(precision, device)
        self.model = model.to(device)
        self.tokenizer = tokenizer
        self.num_classes = num_classes
        self.num_fields = num_fields
        self.max_length = max_length
        self.normalize = normalize
        self.device = torch.device(device)
        if tokenizer.eos_token_id is None:
            raise UserError("generator tokenizer has no end-of-text token; use a causal LM tokenizer with eos_token")
        self.class_ids = [tokenizer.convert_tokens_to_ids(class_token(c)) for c in range(num_classes)]
        self.sep_id = tokenizer.convert_tokens_to_ids(SEP)
        if any(i is None or i == tokenizer.unk_token_id for i in [*self.class_ids, self.sep_id]):
            raise UserError("generator tokenizer lacks the class/separator tokens; build it with Generator.create")

    @classmethod
    def create(
        cls,
        name: str,
        num_classes: int,
        num_fields: int = 1,
        max_length: int = 64,
        seed: int = 0,
        normalize: str = "padded",
        device: str | torch.device = "cpu",
        texts: list[str] | None = None,
        precision: str = "fp32",
        lora: LoraSettings | None = None,
    ) -> Generator:
        """Load a causal LM and add `<bos_c>` per class (copied from end-of-text), `<sep>`, pad; with `lora`,
        wrap it in LoRA adapters that also train the added tokens' rows."""
        if lora is not None and name == SCRATCH_GENERATOR:
            raise UserError(f"LoRA needs a pretrained generator, not '{name}'; pass e.g. --generator smollm2")
        model, tok = load_generator_lm(name, seed, texts)
        specials = [class_token(c) for c in range(num_classes)]
        tok.add_special_tokens({"additional_special_tokens": specials}, replace_extra_special_tokens=False)
        tok.add_tokens([SEP])
        added = [*specials, SEP]
        if tok.pad_token is None:
            tok.add_special_tokens({"pad_token": "<pad>"})
            added.append("<pad>")
        old = model.get_input_embeddings().weight.shape[0]
        if len(tok) > old:
            with seeded(seed, "new_token_rows"):  # the added rows (separator, pad) are drawn at random
                model.resize_token_embeddings(len(tok), mean_resizing=False)
        emb = model.get_input_embeddings().weight
        with torch.no_grad():
            eos = emb[tok.eos_token_id].clone()
            for t in specials:
                emb[tok.convert_tokens_to_ids(t)] = eos
            out = model.get_output_embeddings()
            if out is not None and out.weight.data_ptr() != emb.data_ptr():
                for t in [*specials, SEP]:
                    out.weight[tok.convert_tokens_to_ids(t)] = out.weight[tok.eos_token_id]
        origin = None
        if lora is not None:
            with seeded(seed, "lora_init"):  # LoRA's A matrices are drawn at random
                model = with_lora(model, lora, [tok.convert_tokens_to_ids(t) for t in added])
            origin = {"base": name, "seed": seed, "lora": lora.model_dump()}
        return cls(model, tok, num_classes, num_fields, max_length, normalize, device, precision, origin)

    @contextmanager
    def class_token_lr(self, mult: float) -> Iterator[None]:
        """Optimiser steps inside the block move the `<bos_c>` embedding rows `mult` times as far.

        A per-row learning-rate multiplier (the embedding matrix is one tensor, often tied to the output
        layer, so it cannot get its own parameter group); 1 leaves the step untouched.
        """
        if mult == 1.0:
            yield
            return
        emb, rows = self.class_rows()
        before = emb.detach()[rows].clone()
        yield
        with torch.no_grad():
            emb[rows] = before + mult * (emb[rows] - before)

    def class_rows(self) -> tuple[torch.Tensor, list[int]]:
        """The trained tensor holding the `<bos_c>` embeddings and their rows in it (under LoRA: the added
        tokens' own parameter, whose rows follow the order the tokens were added in)."""
        if self.origin is None:
            return self.model.get_input_embeddings().weight, self.class_ids
        delta = next(p for n, p in self.model.named_parameters() if "trainable_tokens_delta" in n)
        return delta, list(range(self.num_classes))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """What training changes, for stage checkpoints: the whole model, or under LoRA the adapter alone."""
        if self.origin is None:
            return self.model.state_dict()
        from peft import get_peft_model_state_dict

        return get_peft_model_state_dict(self.model)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if self.origin is None:
            self.model.load_state_dict(state)
            return
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(self.model, state)

    # ---- encoding and loss -------------------------------------------------------------------------
    def encode(self, texts: Sequence[tuple[str, ...]], labels: Sequence[int] | None) -> dict[str, torch.Tensor]:
        """Token ids `<bos_c> text <eos>` padded to a multiple of 8 (labels None: unlabelled)."""
        tok = self.tokenizer
        bodies = tok([" " + f" {SEP} ".join(s.strip() for s in t) + " " for t in texts], add_special_tokens=False)[
            "input_ids"
        ]
        rows = []
        for i, body in enumerate(bodies):
            bos = tok.eos_token_id if labels is None else self.class_ids[int(labels[i])]
            rows.append([bos] + body[: self.max_length - 2] + [tok.eos_token_id])
        length = max(len(r) for r in rows)
        length = min(-(-length // 8) * 8, max(self.max_length, length))
        ids = torch.full((len(rows), length), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        return {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}

    def per_sample_loss(self, texts: Sequence[tuple[str, ...]], labels: Sequence[int] | None) -> torch.Tensor:
        """Per-sample LM loss ℓ_i (differentiable in the generator)."""
        enc = self.encode(texts, labels)
        with autocast(self.device, self.precision):
            logits = self.model(**enc).logits[:, :-1].float()
        target = enc["input_ids"][:, 1:].masked_fill(enc["attention_mask"][:, 1:] == 0, -100)
        ce = F.cross_entropy(logits.transpose(1, 2), target, ignore_index=-100, reduction="none").sum(1)
        if self.normalize == "true_length":
            return ce / (target != -100).sum(1).clamp(min=1)
        return ce / (enc["input_ids"].shape[1] - 1)

    # ---- sampling ----------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        label: int,
        n: int,
        *,
        seed: int,
        top_p: float = 0.95,
        batch_size: int = 64,
        max_attempts: int = 10,
        progress: bool = False,
    ) -> list[tuple[str, ...]]:
        """`n` texts of class `label` by nucleus sampling from the prompt `<bos_label>` alone.

        Samples with fewer non-empty `<sep>`-separated pieces than the task has fields are drawn again.
        """
        tok = self.tokenizer
        was = self.model.training
        self.model.eval()
        banned = sorted({*self.class_ids, tok.pad_token_id} - {tok.eos_token_id})
        out: list[tuple[str, ...]] = []
        bar = progress_bar(None, f"generate class {label}", total=n, leave=False, disable=not progress)
        rounds = 0
        while len(out) < n:
            if rounds >= max_attempts + n // max(batch_size, 1):
                self.model.train(was)
                raise UserError(
                    f"the generator produced too few usable (non-empty) texts for class {label} "
                    f"({len(out)} of {n}); train stage 1 longer or use a pretrained generator"
                )
            torch.manual_seed(derive_seed(seed, "generate_round", rounds))
            bsz = min(batch_size, max(8, n - len(out)))
            prompt = torch.full((bsz, 1), self.class_ids[label], dtype=torch.long, device=self.device)
            with autocast(self.device, self.precision):
                gen = self.model.generate(
                    input_ids=prompt,
                    attention_mask=torch.ones_like(prompt),
                    do_sample=True,
                    top_p=top_p,
                    top_k=0,
                    max_length=self.max_length,
                    pad_token_id=tok.pad_token_id,
                    eos_token_id=tok.eos_token_id,
                    suppress_tokens=banned,
                    repetition_penalty=1.0,
                )
            for row in gen[:, 1:].tolist():
                if tok.eos_token_id in row:
                    row = row[: row.index(tok.eos_token_id)]
                pieces = [p.strip() for p in tok.decode(row, skip_special_tokens=True).split(SEP)]
                pieces = pieces[: self.num_fields]
                if len(pieces) == self.num_fields and all(pieces) and len(out) < n:
                    out.append(tuple(pieces))
                    bar.update(1)
            rounds += 1
        bar.close()
        self.model.train(was)
        return out

    # ---- persistence -------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Save model, tokenizer (with the added tokens) and settings as a CPU-loadable HF folder; under LoRA the
        adapter (LoRA weights and the added tokens' rows) and what rebuilds the base."""
        meta = {
            "num_classes": self.num_classes,
            "num_fields": self.num_fields,
            "max_length": self.max_length,
            "normalize": self.normalize,
        }
        with atomic_path(Path(path)) as tmp:
            if self.origin is None:
                self.model.save_pretrained(str(tmp))
                self.tokenizer.save_pretrained(str(tmp))
            else:
                self.model.peft_config["default"].base_model_name_or_path = self.origin["base"]  # not a local path
                self.model.save_pretrained(str(tmp), save_embedding_layers=False)
                meta["origin"] = self.origin
            (tmp / META).write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, path: Path, device: str | torch.device = "cpu", precision: str = "fp32") -> Generator:
        path = Path(path)
        meta_path = path / META
        if not meta_path.exists():
            raise UserError(f"{path} is not a saved generator (no {META}); pass a run's generator")
        meta = json.loads(meta_path.read_text())
        origin = meta.pop("origin", None)
        if origin is None:
            model, tokenizer = load_causal_lm(str(path))  # fp32, as saved
            return cls(model, tokenizer, device=device, precision=precision, **meta)
        from peft import PeftModel

        base = cls.create(origin["base"], meta["num_classes"], seed=origin["seed"])  # base and added tokens
        model = PeftModel.from_pretrained(base.model, str(path), is_trainable=True)
        return cls(model, base.tokenizer, device=device, precision=precision, origin=origin, **meta)


def with_lora(model: nn.Module, lora: LoraSettings, token_ids: list[int]) -> nn.Module:
    """`model` wrapped in LoRA adapters (peft) that also train the input-embedding rows of `token_ids`."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise UserError("LoRA generators need peft; install it with `pip install peft`") from None
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        trainable_token_indices=token_ids,
    )
    try:
        return get_peft_model(model, config)
    except ValueError as e:
        raise UserError(f"LoRA settings do not fit the generator ({str(e).splitlines()[0][:160]}); fix lora") from None
