"""Which image data a job reads, and how it is prepared (size, channels, ZCA, limits)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from distillkit.data.images import ImageData, load_images


class DataConfig(BaseModel):
    """An image dataset by name (or folder / .npz file) and how it is prepared."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = "mnist"
    root: str | None = None
    download: bool = False
    size: int | None = None
    channels: int | None = None
    zca: bool = False
    val_size: int | None = None
    train_limit: int | None = None

    def load(self, seed: int) -> ImageData:
        return load_images(
            self.dataset,
            self.root,
            seed=seed,
            val_size=self.val_size,
            size=self.size,
            channels=self.channels,
            zca=self.zca,
            train_limit=self.train_limit,
            download=self.download,
        )
