"""The study file's search-space distributions and the `search:` block (sampler, scheduler,
budget): what a sweep may draw, validated torch-free; leader.study.tune turns them into Tune's."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Range(_Strict):
    """A bounded distribution; subclasses declare `low` / `high` with their own types."""

    @model_validator(mode="after")
    def _order(self):
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be < high ({self.high})")
        return self


class Uniform(_Range):
    type: Literal["uniform"]
    low: float
    high: float


class LogUniform(Uniform):
    type: Literal["loguniform"]  # type: ignore[assignment]

    @model_validator(mode="after")
    def _pos(self):
        if self.low <= 0:
            raise ValueError("loguniform needs low > 0")
        return self


class IntRange(_Range):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False


class Choice(_Strict):
    type: Literal["choice"]
    values: list[float | int | str | bool] = Field(min_length=1)


Dist = Annotated[Uniform | LogUniform | IntRange | Choice, Field(discriminator="type")]


class SchedulerSpec(_Strict):
    type: Literal["asha", "fifo"] = Field("asha", description="ASHA early-stops weak trials by epoch; fifo runs all.")
    grace_period: int = Field(1, ge=1, description="Epochs every trial gets before it may be stopped.")
    reduction_factor: float = Field(2.0, gt=1, description="ASHA halving rate.")
    max_t: int | None = Field(None, ge=1, description="Max epochs (default: student.epochs).")


class SearchSpec(_Strict):
    space: dict[str, Dist] = Field(default_factory=dict, description="Student hyper-parameter -> distribution.")
    sampler: Literal["tpe", "random"] = Field("tpe", description="Optuna sampler.")
    metric: str = Field("val_prauc", description="Reported metric to optimise (a key of the per-epoch report).")
    mode: Literal["max", "min"] = Field("max", description="Maximise or minimise `metric`.")
    num_samples: int = Field(8, ge=1, description="Trials per (dataset, backbone) sweep.")
    max_concurrent: int = Field(1, ge=1, description="Trials run at the same time (ConcurrencyLimiter).")
    storage: str | None = Field(
        None,
        description="Optuna RDB URL for the searcher itself (sqlite:/// paths are relative to the study dir). "
        "Caveat: Ray Tune then cannot restore an interrupted sweep (it restarts it). Finished sweeps are "
        "always exported to <study>/optuna.db for `optuna-dashboard`.",
    )
    seed: int = Field(0, description="Sampler seed.")
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)

    @field_validator("storage")
    @classmethod
    def _url(cls, v):
        if v is not None and not re.match(r"^[a-z][a-z0-9+]*://", v):
            raise ValueError("must be an SQLAlchemy URL such as sqlite:///optuna.db or postgresql://host/db")
        return v
