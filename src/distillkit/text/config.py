"""The typed DiLM run configuration and its presets (`quick` for a 2-core CPU, `paper` for a GPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from distillkit.errors import UserError, validated
from distillkit.text.evaluate import FinetuneConfig
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
    device: str = "cpu"
    generator: str = "gpt2"
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
    full_finetune: FinetuneConfig = Field(default_factory=lambda: FinetuneConfig(steps=1000, batch_size=32))
    full_runs: int = 3
    checkpoint: Literal["best", "last"] = "best"
    validate_every: int = 200  # outer loops; validation also runs before stage 2 and at its end
    val_dpc: int = 20
    val_sets: int = 5
    val_runs: int = 5
    icl: ICLConfig | None = None

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


def paper_preset(dataset: str = "sst2") -> DiLMConfig:
    """The published settings (GPT-2 generator, BERT-base learner); needs a GPU and the hub or its cache."""
    from distillkit.data.text import GLUE_TASKS

    max_len = GLUE_TASKS[dataset].max_length if dataset in GLUE_TASKS else 128
    real_batch = 100 if dataset in ("qqp", "mnli") else 200
    return DiLMConfig(
        preset="paper",
        dataset=dataset,
        generator="gpt2",
        learner="bert-base-uncased",
        max_length=max_len,
        gm=GMConfig(real_batch=real_batch),
        gen_batch_size=512,
    )


def quick_preset(dataset: str = "fine_foods") -> DiLMConfig:
    """Minutes on a 2-core CPU: a 4-layer GPT-2 trained from scratch, MiniLM with a frozen body, few steps.

    SmolLM2-135M (`generator="smollm2-135m"`) or GPT-2 are better generators but too slow for this budget.
    """
    return DiLMConfig(
        preset="quick",
        dataset=dataset,
        generator="scratch-gpt2",
        learner="minilm",
        max_length=48,
        max_train=600,
        max_validation=100,
        max_test=300,
        dpcs=[5, 10],
        methods=["dilm", "vanilla_lm", "kmeans_medoid", "herding", "random", "full"],
        oversample=5,
        share_pool=True,
        num_sets=2,
        runs_per_set=2,
        gen_batch_size=64,
        stage1=Stage1Config(steps=60, batch_size=16, lr=1e-3, checkpoint_every=20),
        gm=GMConfig(
            outer_loops=2,
            inner_loops=4,
            learner_steps=3,
            syn_batch=12,
            real_batch=12,
            rt_sets=3,
            dms_interval=1,
            lr=1e-4,
            learner_lr=1e-3,
            learner_batch=32,
            learner_train_body=False,
            checkpoint_every=1,
        ),
        finetune=FinetuneConfig(steps=100, batch_size=64, lr=1e-2, train_body=False),
        full_finetune=FinetuneConfig(steps=300, batch_size=64, lr=1e-2, train_body=False),
        full_runs=3,
        checkpoint="last",
        validate_every=0,
        val_dpc=5,
        val_sets=1,
        val_runs=2,
    )


PRESETS = {"quick": quick_preset, "paper": paper_preset}


def preset_config(name: str, dataset: str) -> DiLMConfig:
    if name not in PRESETS:
        raise UserError(f"unknown preset '{name}'; choose one of {sorted(PRESETS)}")
    return PRESETS[name](dataset)


def config_from_dict(data: dict[str, Any]) -> DiLMConfig:
    """Validate settings (a preset's, a config file's, with overrides); a bad one is one line naming it."""
    return validated(DiLMConfig, data)


def read_config_file(path: Path) -> DiLMConfig:
    """A run's config.json as a DiLMConfig; a missing, corrupt or invalid file is one clear line."""
    from distillkit.runs import read_json

    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} does not exist or is not a file; pass a run's config.json")
    data = read_json(path)
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a JSON object of settings, like a run's config.json")
    return config_from_dict(data)
