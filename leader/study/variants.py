"""What the grid runs on the best config: the named ablation variants (switches on the student's
flat fields) and the sensitivity weights. A new ablation is one entry in VARIANTS."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

VARIANTS: dict[str, dict[str, Any]] = {
    "full": {},
    "no_kd": {"kd": "none"},
    "output_kd": {"kd": "output"},
    "no_align": {"align": False},
    "split_visit_encoder": {"shared_visit_encoder": False},
    # negative control: KD to teacher states shuffled across patients (a gain that survives it
    # is regularisation, not transfer)
    "kd_shuffled": {"kd_shuffle": True},
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AblationSpec(_Strict):
    variants: list[str] = Field(
        default_factory=lambda: list(VARIANTS),
        description=f"Named variants applied to the best config: {list(VARIANTS)}.",
    )
    custom: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Extra named variants: name -> student config overrides."
    )

    @model_validator(mode="after")
    def _known(self):
        for v in self.variants:
            if v not in VARIANTS and v not in self.custom:
                raise ValueError(f"unknown variant {v!r}; known: {sorted(VARIANTS) + sorted(self.custom)}")
        return self

    def overrides(self, name: str) -> dict:
        return dict(self.custom.get(name, VARIANTS.get(name, {})))


class SensitivitySpec(_Strict):
    alpha: list[float] = Field(default_factory=list, description="KD weights to sweep around the best config.")
    beta: list[float] = Field(default_factory=list, description="Alignment weights to sweep around the best config.")

    @field_validator("alpha", "beta")
    @classmethod
    def _nonneg(cls, v):
        if any(x < 0 for x in v):
            raise ValueError("weights must be >= 0")
        return v
