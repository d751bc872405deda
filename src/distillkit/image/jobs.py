"""The settings of the single-stage image commands (teacher, experts, distill, eval), as validated models.

Each is what `--print-config` shows and what `--config` takes back; `distill image run` and `compare` have
their own models (`ImageRunConfig`, `CompareConfig`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from distillkit.data.config import DataConfig
from distillkit.devices import DEVICE_HELP
from distillkit.image.apm import APMConfig
from distillkit.image.evaluate import EvalConfig
from distillkit.image.experts import ExpertConfig
from distillkit.image.teacher import TeacherConfig


class _Job(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, ge=0)
    device: str = Field("auto", description=DEVICE_HELP)


class TeacherJob(_Job):
    """`distill image teacher`: a pool of teachers on one dataset."""

    data: DataConfig = Field(default_factory=DataConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)


class ExpertJob(_Job):
    """`distill image experts`: MTT expert trajectories on one dataset."""

    data: DataConfig = Field(default_factory=DataConfig)
    experts: ExpertConfig = Field(default_factory=ExpertConfig)


EXPERT_DEFAULTS = {"experts": {"num_experts": 10}}  # `distill image experts` trains 10 unless told (MTT: 100)


class DistillJob(_Job):
    """`distill image distill`: APM only, with a given teacher pool (optionally in G merged groups)."""

    preset: str = "quick"
    paper_row: str | None = None
    data: DataConfig = Field(default_factory=DataConfig)
    apm: APMConfig = Field(default_factory=APMConfig)
    teachers: str | None = None
    groups: int | None = None
    group_split: str = "ipc"


class EvalJob(_Job):
    """`distill image eval`: fresh networks trained on a distilled set (and a random real subset)."""

    eval: EvalConfig = Field(default_factory=EvalConfig)
    baselines: bool = True
