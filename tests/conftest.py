"""Shared fixtures. Areas add their own fixtures below in their own section (append-only)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Offline and CPU everywhere; a session-private cache so tests never read a user's cache,
# except the compiled DeepSpeed ops, which are expensive and safe to share.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "leader" / "torch_extensions"))


@pytest.fixture(scope="session", autouse=True)
def _leader_cache(tmp_path_factory):
    old = os.environ.get("LEADER_CACHE")
    os.environ["LEADER_CACHE"] = str(tmp_path_factory.mktemp("leader_cache"))
    # reports built by tests never land in the repo's reports/ folder
    os.environ.setdefault("LEADER_REPORTS_DIR", str(tmp_path_factory.mktemp("reports")))
    yield Path(os.environ["LEADER_CACHE"])
    if old is None:
        os.environ.pop("LEADER_CACHE", None)
    else:
        os.environ["LEADER_CACHE"] = old


@pytest.fixture(scope="session")
def demo_root() -> Path:
    from leader.paths import find_demo_root

    root = find_demo_root()
    if root is None:
        pytest.skip("MIMIC-III demo not present (../shared/data/mimic3demo)")
    return root


@pytest.fixture(scope="session")
def random_ds():
    from helpers import random_dataset

    return random_dataset()


@pytest.fixture()
def ray_local():
    """A local Ray (2 CPUs) shared across tests; tests that need their own cluster
    (ray.cluster_utils.Cluster) call ray.shutdown() first."""
    from leader.ray_utils import ensure_ray

    ray = ensure_ray(num_cpus=2)
    yield ray


def pytest_sessionfinish(session, exitstatus):
    try:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    except Exception:
        pass


# ---- data fixtures ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def small_synthetic(_leader_cache):
    """A prepared synthetic cohort (400 patients, ~1k visits, real ICD-9/ATC names and a
    diagnosis->drug structure); prepares in about a second, cached for the session."""
    from leader.data.cache import PrepareOptions, prepare

    return prepare("synthetic", opts=PrepareOptions(n_patients=400, synthetic_seed=0))


# ---- student fixtures -------------------------------------------------------------------

# ---- teacher fixtures -------------------------------------------------------------------


@pytest.fixture(scope="session")
def teacher_ds():
    """A tiny random cohort for teacher runs (60 patients, 30 drugs): seconds per Ray Train step."""
    from helpers import random_dataset

    return random_dataset(n_patients=60, seed=0)


# ---- feature fixtures -------------------------------------------------------------------


@pytest.fixture(scope="session")
def feature_teacher_dir(random_ds, tmp_path_factory):
    """An untrained tiny-llama teacher checkpoint (real peft adapter + head) sized for random_ds."""
    from leader.teacher.model import build_teacher, save_teacher

    out = tmp_path_factory.mktemp("feature_teacher")
    model = build_teacher("tiny-llama", random_ds.n_meds, lora_rank=4, seed=0)
    save_teacher(model, out, {"dataset_fingerprint": random_ds.fingerprint, "max_length": 256})
    return out


# ---- study fixtures ---------------------------------------------------------------------
