"""The resolved configuration of one generation run (saved as config.json; budgets may change on resume)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from distillkit.dialogbench.generate.checks import CheckSettings
from distillkit.lm.secrets import mask_url

# may differ between a run and its resumption (the preset only names where the settings came from)
RESUMABLE = ("max_requests", "max_tokens", "concurrency", "timeout", "max_retries", "preset")
# recomputed from the count asked for and the language, so a run's config.json given back as --config drops them
DERIVED = ("domains", "rounding_note")


class GenSettings(BaseModel):
    """Generator, judge, tasks, counts, mitigations, sampling, checks and budget."""

    model_config = ConfigDict(extra="forbid")

    preset: str = "default"  # the preset the settings started from (presets/dialogbench/)
    llm: str
    base_url: str | None = None
    judge_llm: str | None = None  # None: the generator judges; "" or judge=False: no LLM filter
    judge_base_url: str | None = None
    judge: bool = True
    tasks: list[str] = Field(default_factory=list)
    lang: Literal["en", "zh"] = "en"
    per_task: int = 20
    requested_per_task: int = 20
    rounding_note: str | None = None
    domains: list[str] = Field(default_factory=list)
    n_options: int = Field(4, ge=2, le=4)
    seed: int = 0
    domain_balance: bool = True
    style_mix: bool = True
    position_balance: bool = True
    json_schema: bool = True
    temperature: float = 1.0
    presence_penalty: float = 0.6
    max_new_tokens: int = 2048
    prompt_min_turns: int = 10
    check_min_turns: float = CheckSettings.min_turns
    check_max_turns: float = CheckSettings.max_turns
    max_attempts: int = Field(3, ge=1)
    max_invalid_streak: int = Field(10, ge=1)
    concurrency: int = 8
    max_requests: int | None = None
    max_tokens: int | None = None
    timeout: float = Field(120.0, gt=0)  # seconds per request attempt
    max_retries: int = Field(5, ge=0)

    def checks(self) -> CheckSettings:
        return CheckSettings(n_options=self.n_options, min_turns=self.check_min_turns, max_turns=self.check_max_turns)

    def mitigation(self) -> dict[str, bool]:
        return {
            "domain_balance": self.domain_balance,
            "style_mix": self.style_mix,
            "position_balance": self.position_balance,
        }

    def saved(self) -> dict:
        """The settings as written to disk (credentials in the URLs masked)."""
        masked = {"base_url": mask_url(self.base_url), "judge_base_url": mask_url(self.judge_base_url)}
        return self.model_dump() | masked

    def fixed(self) -> dict:
        """The part of the settings a resumed run must share."""
        return {k: v for k, v in self.saved().items() if k not in RESUMABLE}
