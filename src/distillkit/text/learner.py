"""The learner: a Hugging Face encoder with a classification head, and exact head gradients.

Only the head's gradients are matched in DiLM. The head's input ("features", captured by a hook on the
head module) does not depend on the generator, so per-sample head gradients can be computed from cached
features: in closed form for a linear head, by differentiating the head alone otherwise.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from distillkit.devices import autocast, check_precision
from distillkit.text.models import load_encoder_classifier

HEAD_NAMES = ("classifier", "score", "logits_proj")


def find_head(model: nn.Module) -> tuple[str, nn.Module]:
    """The classification head module of a sequence classifier (BERT/RoBERTa `classifier`, GPT-2 `score`)."""
    for name in HEAD_NAMES:
        mod = getattr(model, name, None)
        if isinstance(mod, nn.Module):
            return name, mod
    raise ValueError(f"no classification head found on {type(model).__name__} (looked for {HEAD_NAMES})")


class Learner:
    """An encoder classifier with its tokenizer; `reset(seed)`: pretrained body, fresh head.

    `precision="bf16"` runs the encoder under bfloat16 autocast; its logits and head-input features come
    back as float32, so head gradients (closed form or autograd) are still taken in float32.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        max_length: int = 64,
        dropout: bool = False,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
    ):
        self.precision = check_precision(precision, device)
        self.model = model.to(device)
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.dropout = dropout
        self.device = torch.device(device)
        self.head_name, self.head = find_head(model)
        self._pretrained = copy.deepcopy(model.state_dict())
        self._init_std = float(getattr(model.config, "initializer_range", 0.02))
        self._cache: dict[int, torch.Tensor] = {}
        self.set_mode()

    @classmethod
    def load(
        cls,
        name: str,
        num_labels: int,
        max_length: int = 64,
        seed: int = 0,
        dropout: bool = False,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
    ) -> Learner:
        model, tok = load_encoder_classifier(name, num_labels, seed)
        return cls(model, tok, max_length, dropout, device, precision)

    def set_mode(self) -> None:
        """Dropout off unless asked for (off is required for the exact closed-form gradient)."""
        self.model.train(self.dropout)

    def reset(self, seed: int) -> None:
        """Restore the pretrained weights and re-initialise the head: N(0, init std), bias 0.

        The head is drawn on the CPU and copied over, so a seed gives the same head on every device.
        """
        self.model.load_state_dict(self._pretrained)
        g = torch.Generator().manual_seed(int(seed))
        for mod in self.head.modules():
            if isinstance(mod, nn.Linear):
                with torch.no_grad():
                    mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * self._init_std)
                    if mod.bias is not None:
                        mod.bias.zero_()
        self.set_mode()

    def encode(self, texts: Sequence[tuple[str, ...]]) -> dict[str, torch.Tensor]:
        """Tokenise rows of one field (single sentence) or two fields (standard pair encoding)."""
        first = [t[0] for t in texts]
        second = [t[1] if len(t) > 1 else "" for t in texts] if texts and len(texts[0]) > 1 else None
        enc = self.tokenizer(
            first, second, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {k: v.to(self.device) for k, v in enc.items()}

    def _capture(self):
        store: dict[str, torch.Tensor] = {}

        def hook(_mod, args):
            store["features"] = args[0]

        return store, self.head.register_forward_pre_hook(hook)

    def forward(self, texts: Sequence[tuple[str, ...]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, head-input features) for a batch, both float32; gradients flow if enabled by the caller."""
        store, handle = self._capture()
        try:
            with autocast(self.device, self.precision):
                logits = self.model(**self.encode(texts)).logits
        finally:
            handle.remove()
        return logits.float(), store["features"].float()

    @torch.no_grad()
    def features(self, texts: Sequence[tuple[str, ...]], batch_size: int = 64) -> torch.Tensor:
        """Head-input features of many texts, without gradients."""
        out = [self.forward(texts[i : i + batch_size])[1] for i in range(0, len(texts), batch_size)]
        return torch.cat(out) if out else torch.zeros(0, device=self.device)

    def cached_features(self, texts: Sequence[tuple[str, ...]]) -> torch.Tensor:
        """Features of the *pretrained* body (frozen-body evaluation), cached per text list."""
        key = hash(tuple(texts))
        if key not in self._cache:
            head = copy.deepcopy(self.head.state_dict())
            self.model.load_state_dict(self._pretrained)
            self.head.load_state_dict(head)
            self._cache[key] = self.features(texts)
        return self._cache[key]

    def head_logits(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head(feats)

    def head_params(self) -> list[nn.Parameter]:
        return list(self.head.parameters())

    def per_sample_head_grads(self, feats: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-sample gradients of CE w.r.t. the head parameters, flattened: [N, P].

        Linear head: g_i = [(softmax(z_i) - e_y) (x) h_i, softmax(z_i) - e_y] (closed form).
        Other heads: the head alone is differentiated on the cached features (torch.func).
        """
        feats = feats.detach()
        if isinstance(self.head, nn.Linear):
            with torch.no_grad():
                z = self.head(feats)
                delta = F.softmax(z, -1) - F.one_hot(labels, z.shape[-1]).to(z.dtype)
                gw = torch.einsum("nc,nh->nch", delta, feats).flatten(1)
                parts = [gw] + ([delta] if self.head.bias is not None else [])
            return torch.cat(parts, 1)
        from torch.func import functional_call, grad, vmap

        params = {k: v.detach() for k, v in self.head.named_parameters()}

        def loss(p, x, y):
            return F.cross_entropy(functional_call(self.head, p, (x[None],)), y[None])

        g = vmap(grad(loss), in_dims=(None, 0, 0))(params, feats, labels)
        return torch.cat([g[k].flatten(1) for k in params], 1)

    def autograd_head_grad(
        self,
        texts: Sequence[tuple[str, ...]],
        labels: torch.Tensor,
        weights: torch.Tensor | None = None,
        create_graph: bool = False,
    ) -> torch.Tensor:
        """The (weighted) mean head gradient by autograd through a full learner forward pass.

        This is what the closed form replaces; it is kept to check it and to time it.
        """
        logits, _ = self.forward(texts)
        losses = F.cross_entropy(logits, labels, reduction="none")
        total = (weights * losses).sum() if weights is not None else losses.mean()
        grads = torch.autograd.grad(total, self.head_params(), create_graph=create_graph)
        return torch.cat([g.flatten() for g in grads])

    @torch.no_grad()
    def predict(self, texts: Sequence[tuple[str, ...]], batch_size: int = 64) -> np.ndarray:
        was = self.model.training
        self.model.eval()
        preds = [self.forward(texts[i : i + batch_size])[0].argmax(-1).cpu() for i in range(0, len(texts), batch_size)]
        self.model.train(was)
        return torch.cat(preds).numpy() if preds else np.zeros(0, dtype=np.int64)
