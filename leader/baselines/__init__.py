"""Baselines of the LEADER paper's Table III (+ trivial floors): THE registry. A baseline is one
entry here plus its model file (`leader/baselines/<name>.py`, or a fit function in `trivial.py`);
the study's name lists, its result labels and the tuned-baseline schema are all read from it.
Importing this module imports no model (and no torch): `leader study validate` reads it.

Contract:
    BASELINES: dict[str, BaselineInfo]        every trainable baseline, by name
    UNAVAILABLE: dict[str, str]               name -> why it is not provided (safedrug)
    get_baseline(name) -> BaselineInfo        raises ConfigError naming the known ones
    BASELINE_LABELS: {name: label}            how results and reports name each one
    TRIVIAL_BASELINES                         fitted once on train (kind 'fit'), shown beside LEADER
    TUNED_BASELINES                           swept like the student (a search space): the torch
                                              models first (the paper's Table III), then the rest

BaselineInfo fields:
    name            registry key
    label           the name in result tables (results/*.parquet `model`)
    kind            'torch' (impl is a BaselineModel subclass with .build(ds, enc, train_idx,
                    params, ddi)) | 'fit' (impl is fit(ds, params, seed) -> trivial.Fitted)
    target          "module:attribute" of the class or fit function; `impl` imports it
    needs_history   True: multi-visit only (needs an EARLIER visit of the same patient; the
                    model class says the same, a test holds them together)
    learned         False for prior / cooccurrence (nothing to tune or train)
    defaults        every hyper-parameter the trainer accepts for it, with its default
                    (torch models: trainer keys lr, weight_decay, epochs, batch_size, patience,
                    max_visits, max_codes, margin_weight + the model's own keys)
    search_space    suggestion for sweeps: {param: ("loguniform"|"uniform", lo, hi) |
                    ("choice", [values...])}
    citation        the paper
    tunable         has a search space (a `baselines.tuned` entry of a study file)
    model_keys      the hyper-parameters passed to the model constructor (torch kinds)

Train any of them with `leader.baselines.train.train_baseline(ds, name, params, seed, report)`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from leader.baselines.safedrug import REASON as SAFEDRUG_REASON
from leader.errors import ConfigError


@dataclass(frozen=True)
class BaselineInfo:
    name: str
    label: str
    kind: str  # 'torch' | 'fit'
    target: str  # "module:attribute" of the BaselineModel subclass | fit function
    needs_history: bool
    learned: bool
    defaults: dict = field(default_factory=dict)
    search_space: dict = field(default_factory=dict)
    citation: str = ""

    @property
    def impl(self) -> Any:
        """The model class or fit function (imported on first use: torch only when training)."""
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)

    @property
    def tunable(self) -> bool:
        return bool(self.search_space)

    @property
    def model_keys(self) -> set[str]:
        """Hyper-parameters passed to the model constructor (torch kinds)."""
        return set(self.defaults) - set(TRAIN_DEFAULTS) if self.kind == "torch" else set()


# Shared by every torch baseline (the trainer's own keys).
TRAIN_DEFAULTS = {
    "lr": 1e-3,
    "weight_decay": 1e-5,
    "epochs": 30,
    "batch_size": 64,
    "patience": 5,
    "max_visits": 10,
    "max_codes": 64,
    "margin_weight": 0.0,
}
TRAIN_SPACE = {"lr": ("loguniform", 1e-4, 1e-2), "weight_decay": ("loguniform", 1e-7, 1e-3)}


def _torch(
    name: str, label: str, cls: str, needs_history: bool, model_defaults: dict, space: dict, citation: str, **train
) -> BaselineInfo:
    return BaselineInfo(
        name=name,
        label=label,
        kind="torch",
        target=f"leader.baselines.{name}:{cls}",
        needs_history=needs_history,
        learned=True,
        defaults={**TRAIN_DEFAULTS, **train, **model_defaults},
        search_space={**TRAIN_SPACE, **space},
        citation=citation,
    )


BASELINES: dict[str, BaselineInfo] = {
    "prior": BaselineInfo(
        "prior",
        "Prior",
        "fit",
        "leader.baselines.trivial:fit_prior",
        needs_history=False,
        learned=False,
        citation="Drug-frequency prior (train split).",
    ),
    "cooccurrence": BaselineInfo(
        "cooccurrence",
        "CoOccurrence",
        "fit",
        "leader.baselines.trivial:fit_cooccurrence",
        needs_history=False,
        learned=False,
        citation="P(drug | diagnosis) from train co-occurrence counts, averaged over the visit's diagnoses.",
    ),
    "logreg": BaselineInfo(
        "logreg",
        "LogReg",
        "fit",
        "leader.baselines.trivial:fit_logreg",
        needs_history=False,
        learned=True,
        defaults={"C": 1.0, "max_iter": 200},
        search_space={"C": ("loguniform", 1e-3, 1e2)},
        citation="One-vs-rest L2 logistic regression (scikit-learn) on current diag/proc + last drugs.",
    ),
    "retain": _torch(
        "retain",
        "RETAIN",
        "RETAIN",
        False,
        {"emb_dim": 64, "dropout": 0.5},
        {"emb_dim": ("choice", [32, 64, 128]), "dropout": ("uniform", 0.0, 0.6)},
        "Choi et al. RETAIN: An Interpretable Predictive Model for Healthcare using Reverse Time Attention "
        "Mechanism. NeurIPS 2016.",
    ),
    "gamenet": _torch(
        "gamenet",
        "GAMENet",
        "GAMENet",
        False,
        {"emb_dim": 64, "dropout": 0.4, "n_neighbors": 3},
        {
            "emb_dim": ("choice", [32, 64, 128]),
            "dropout": ("uniform", 0.0, 0.6),
            "n_neighbors": ("choice", [1, 3, 5]),
            "margin_weight": ("choice", [0.0, 0.01, 0.1]),
        },
        "Shang et al. GAMENet: Graph Augmented MEmory Networks for Recommending Medication Combination. AAAI 2019.",
        margin_weight=0.01,
    ),
    "micron": _torch(
        "micron",
        "MICRON",
        "MICRON",
        True,
        {"emb_dim": 64, "dropout": 0.5, "last_weight": 1 / 3, "rec_weight": 1.0},
        {
            "emb_dim": ("choice", [32, 64, 128]),
            "dropout": ("uniform", 0.0, 0.6),
            "rec_weight": ("loguniform", 0.1, 10.0),
        },
        "Yang et al. Change Matters: Medication Change Prediction with Recurrent Residual Networks. IJCAI 2021.",
        margin_weight=0.05,
    ),
    "cognet": _torch(
        "cognet",
        "COGNet",
        "COGNet",
        True,
        {"emb_dim": 64, "n_heads": 4, "dropout": 0.3},
        {"emb_dim": ("choice", [32, 64, 128]), "dropout": ("uniform", 0.0, 0.5)},
        "Wu et al. Conditional Generation Net for Medication Recommendation. WWW 2022.",
    ),
}

UNAVAILABLE: dict[str, str] = {"safedrug": SAFEDRUG_REASON}
BASELINE_LABELS: dict[str, str] = {n: i.label for n, i in BASELINES.items()}
TRIVIAL_BASELINES: tuple[str, ...] = tuple(n for n, i in BASELINES.items() if i.kind == "fit")
TUNED_BASELINES: tuple[str, ...] = tuple(
    sorted((n for n, i in BASELINES.items() if i.tunable), key=lambda n: BASELINES[n].kind != "torch")
)


def get_baseline(name: str) -> BaselineInfo:
    if name in UNAVAILABLE:
        raise ConfigError(UNAVAILABLE[name])
    if name not in BASELINES:
        raise ConfigError(
            f"unknown baseline {name!r}; known: {', '.join(BASELINES)} (unavailable: {', '.join(UNAVAILABLE)})"
        )
    return BASELINES[name]


__all__ = [
    "BASELINES",
    "BASELINE_LABELS",
    "TRAIN_DEFAULTS",
    "TRIVIAL_BASELINES",
    "TUNED_BASELINES",
    "UNAVAILABLE",
    "BaselineInfo",
    "get_baseline",
]
