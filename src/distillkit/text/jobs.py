"""The settings of the single-step text commands (generate, eval, icl), as validated models.

Each is what `--print-config` shows and what `--config` takes back; `distill text run` has `DiLMConfig`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from distillkit.devices import DEVICE_HELP

SEED_MAX = 2**32 - 1  # numpy's seeds stop here


class _Job(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, ge=0, le=SEED_MAX)
    device: str = Field("auto", description=DEVICE_HELP)


class TextGenerateJob(_Job):
    """`distill text generate`: a distilled set of any DPC from a trained generator."""

    dpc: int | None = Field(None, ge=1)
    oversample: int = Field(100, ge=1)
    encoder: str = "minilm"
    label_names: list[str] | None = None


class TextEvalJob(_Job):
    """`distill text eval`: fresh learners fine-tuned on a saved set, scored on a dataset's test split."""

    dataset: str = "fine_foods"
    learner: str = "minilm"
    runs: int = Field(10, ge=1)
    steps: int = Field(100, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = 1e-4
    max_length: int = Field(64, ge=1)
    max_test: int | None = Field(None, ge=1)
    train_body: bool = True


class ICLJob(_Job):
    """`distill text icl`: k-shot prompts from a small set, label-word likelihood on a causal LM."""

    model: str = "smollm2"
    dataset: str = "fine_foods"
    shots_per_class: int = Field(2, ge=1)
    label_words: list[str] | None = None
    max_test: int = Field(200, ge=1)
    max_tokens: int = Field(1024, ge=1)
