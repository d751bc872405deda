"""The typed DiLM run configuration and its presets (YAML files under distillkit/presets/text: `quick` for a
2-core CPU, `paper` for a GPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from distillkit.devices import DEVICE_HELP, resolve_device
from distillkit.errors import UserError
from distillkit.settings import load_preset, merge_settings, preset_names, validate
from distillkit.settings import read_config_file as read_settings
from distillkit.text.evaluate import FinetuneConfig
from distillkit.text.generator import LoraSettings
from distillkit.text.gm import GMConfig
from distillkit.text.stage1 import Stage1Config

METHODS = ("dilm", "vanilla_lm", "kmeans_medoid", "greedy_k_center", "herding", "random", "full")


class ICLConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = "smollm2-135m"
    shots_per_class: int = 2
    max_test: int = 200
    prompt_max_tokens: int = 1024
    methods: list[str] = ["dilm", "kmeans_medoid", "random"]
    label_words: list[str] | None = None  # default: the dataset's label names


class DiLMConfig(BaseModel):
    """Everything a run depends on; saved as config.json in the run directory."""

    model_config = ConfigDict(extra="forbid")
    preset: str = "custom"
    dataset: str = "fine_foods"
    data_path: str | None = None
    test_path: str | None = None
    text_columns: list[str] | None = None
    label_column: str = "label"
    max_train: int | None = None
    max_validation: int | None = None
    max_test: int | None = None
    seed: int = 0
    device: str = Field("auto", description=DEVICE_HELP, validate_default=True)
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: the generator and learner run under bfloat16 autocast
    generator: str = "gpt2"
    lora: LoraSettings | None = None  # train LoRA adapters on a pretrained generator instead of all its weights
    # a folder with finished generator_vanilla/ and generator_dilm/ to use instead of training them; `shipped`:
    # the demo's, which ship with distillkit (built by bench/build_demo_generators.py)
    generators_from: str | None = None
    learner: str = "bert-base-uncased"
    encoder: str | None = None  # selection encoder; None = the learner's pretrained body
    eval_learners: list[str] = []  # other architectures also fine-tuned on every set
    max_length: int = 64
    normalize: Literal["padded", "true_length"] = "padded"
    learner_dropout: bool = False
    dpcs: list[int] = [5, 10, 20]
    methods: list[str] = list(METHODS)
    oversample: int = 100
    share_pool: bool = False  # True: one generated pool per set (oversample x max DPC) serves every DPC
    num_sets: int = 20
    runs_per_set: int = 5
    gen_batch_size: int = 64
    stage1: Stage1Config = Field(default_factory=Stage1Config)
    gm: GMConfig = Field(default_factory=GMConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    # the full-data reference keeps its best validation step (every 100 of 1000)
    full_finetune: FinetuneConfig = Field(
        default_factory=lambda: FinetuneConfig(steps=1000, batch_size=32, select_every=100)
    )
    full_runs: int = 3
    checkpoint: Literal["best", "last"] = "best"
    validate_every: int = 200  # outer loops; validation also runs before stage 2 and at its end
    val_dpc: int = 20
    val_sets: int = 5
    val_runs: int = 5
    icl: ICLConfig | None = None

    @field_validator("device")
    @classmethod
    def _concrete_device(cls, v: str) -> str:
        """`auto` becomes the device it names here (CUDA when present, else CPU); others are checked before work."""
        return str(resolve_device(v)) if v.strip().lower() == "auto" else v

    def check(self) -> DiLMConfig:
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise UserError(f"unknown method(s) {bad}; choose from {list(METHODS)}")
        if not self.dpcs or any(d < 1 for d in self.dpcs):
            raise UserError(f"dpc values must be positive integers, got {self.dpcs}; pass e.g. --dpc 5 --dpc 10")
        if self.icl is not None and set(self.icl.methods) - set(self.methods):
            raise UserError(f"ICL methods {self.icl.methods} must also be among the run's methods {self.methods}")
        if self.oversample < 1 or self.num_sets < 1 or self.runs_per_set < 1:
            raise UserError("oversample, num_sets and runs_per_set must be at least 1; fix the config")
        if min(self.stage1.class_token_lr_mult, self.gm.class_token_lr_mult) <= 0:
            raise UserError("class_token_lr_mult must be positive (1 = the generator's learning rate); fix the config")
        return self


PRESETS = tuple(preset_names("text"))


def preset_settings(name: str, dataset: str) -> dict[str, Any]:
    """The settings of preset `name` for `dataset` (its `datasets:` entry merged in), as nested data."""
    raw = load_preset("text", name)
    per_dataset = raw.pop("datasets", {}) or {}
    return {**merge_settings(raw, per_dataset.get(dataset, {})), "preset": name, "dataset": dataset}


def preset_config(name: str, dataset: str) -> DiLMConfig:
    """The validated config of preset `name` for `dataset`; an unknown name is one line listing the known ones."""
    return config_from_dict(preset_settings(name, dataset))


def paper_preset(dataset: str = "sst2") -> DiLMConfig:
    """The published settings (GPT-2 generator, BERT-base learner); needs a GPU and the hub or its cache."""
    return preset_config("paper", dataset)


def quick_preset(dataset: str = "fine_foods") -> DiLMConfig:
    """Minutes on a 2-core CPU: a 4-layer GPT-2 trained from scratch, MiniLM with a frozen body, few steps."""
    return preset_config("quick", dataset)


def config_from_dict(data: dict[str, Any]) -> DiLMConfig:
    """Validate settings (a preset's, a config file's, with overrides); a bad one is one line naming it."""
    return validate(DiLMConfig, data)


def read_config_file(path: Path) -> DiLMConfig:
    """A run's config.json (or any YAML/JSON settings file) as a DiLMConfig; a bad file is one clear line."""
    return config_from_dict(read_settings(path))
