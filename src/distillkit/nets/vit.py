"""A small ViT (patch 4, dim 512, depth 3, 4 heads, MLP 512, dropout 0.1: the APM reference's ViT)."""

from __future__ import annotations

import torch
from torch import nn


class ViT(nn.Module):
    def __init__(
        self,
        channels: int,
        num_classes: int,
        image_size: int,
        patch: int = 4,
        dim: int = 512,
        depth: int = 3,
        heads: int = 4,
        mlp_dim: int = 512,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        patch = patch if image_size % patch == 0 else 1
        n = (image_size // patch) ** 2
        self.patchify = nn.Conv2d(channels, dim, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            dim, heads, mlp_dim, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.classifier = nn.Linear(dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patchify(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), tokens], dim=1) + self.pos
        return self.norm(self.encoder(tokens)[:, 0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))
