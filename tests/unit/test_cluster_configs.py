"""The shipped cluster configs are checked by the parsers that will consume them (Ray's launcher
schema, DeepSpeed's config parser, Ray's RuntimeEnv and packager), so a typo fails here rather
than after an expensive `ray up` on a V100 cluster."""

from __future__ import annotations

import copy
import json
import zipfile
from pathlib import Path

import pytest
import yaml

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
DS_CONFIGS = ["zero2_v100_fp16.json", "zero3_v100_fp16.json", "zero3_v100_fp16_offload.json"]


@pytest.fixture(scope="module")
def launcher() -> dict:
    return yaml.safe_load((CLUSTER / "ray-cluster.yaml").read_text())


@pytest.fixture(scope="module")
def kuberay() -> list[dict]:
    return [d for d in yaml.safe_load_all((CLUSTER / "kuberay-raycluster.yaml").read_text()) if d]


@pytest.fixture(scope="module")
def runtime_env() -> dict:
    return yaml.safe_load((CLUSTER / "runtime_env.yaml").read_text())


# ---- Ray cluster launcher ----------------------------------------------------------------------


def test_launcher_yaml_matches_ray_schema(launcher):
    """The raw file against the schema inside the ray package, then as `ray up` sees it
    (merged with the AWS defaults, validated again with Ray's own checks)."""
    import jsonschema
    import ray.autoscaler
    from ray.autoscaler._private.util import prepare_config, validate_config

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(launcher, schema)
    prepared = prepare_config(copy.deepcopy(launcher))
    validate_config(prepared)
    assert prepared["head_node_type"] == "head"


def test_launcher_schema_rejects_a_typo(launcher):
    """Guards the guard: the schema really is strict about node-type keys."""
    import jsonschema
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    bad = copy.deepcopy(launcher)
    bad["available_node_types"]["gpu_v100"]["min_worker"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_launcher_shape_is_multi_node_v100(launcher):
    from ray.autoscaler._private.util import prepare_config

    cfg = prepare_config(copy.deepcopy(launcher))
    gpu = cfg["available_node_types"]["gpu_v100"]
    assert gpu["node_config"]["InstanceType"] in {"p3dn.24xlarge", "p3.16xlarge"}
    assert gpu["resources"]["GPU"] == 8
    assert 0 <= gpu["min_workers"] <= gpu["max_workers"] == cfg["max_workers"] == 8
    assert cfg["available_node_types"]["head"]["resources"].get("CPU") == 0
    assert cfg["provider"]["cache_stopped_nodes"] is False


def test_launcher_head_is_private_and_authenticated(launcher):
    """The AWS defaults start the dashboard on 0.0.0.0; ours must override every start command."""
    from ray.autoscaler._private.util import prepare_config

    cfg = prepare_config(copy.deepcopy(launcher))
    head = " ".join(cfg["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "0.0.0.0" not in head
    assert "RAY_AUTH_MODE=token" in head
    assert "RAY_AUTH_MODE=token" in " ".join(cfg["worker_start_ray_commands"])
    # every node gets the same token
    assert cfg["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    # user-made security groups on every node type: a launcher-made group opens SSH to 0.0.0.0/0
    for name, node_type in cfg["available_node_types"].items():
        assert node_type["node_config"].get("SecurityGroupIds"), name
    assert "security_group" not in cfg["provider"]


def test_launcher_installs_package_and_mounts_shared_storage(launcher):
    setup = "\n".join(launcher["setup_commands"])
    torch_line = next(i for i, c in enumerate(launcher["setup_commands"]) if "torch==2.13.0" in c)
    pkg_line = next(i for i, c in enumerate(launcher["setup_commands"]) if "pip install -q -e ~/leader" in c)
    assert torch_line < pkg_line, "torch must be installed (from a Volta-capable build) before the package"
    assert "mount -t nfs4" in setup and "/mnt/leader" in setup
    assert "LEADER_CACHE=/mnt/leader/cache" in setup and "LEADER_STORAGE=/mnt/leader/storage" in setup
    # rsync patterns that would drop the leader/data package are a real risk: only anchored "/data"
    assert "/data" in launcher["rsync_exclude"]
    assert not any(p.strip("*/") == "data" and not p.startswith("/") for p in launcher["rsync_exclude"])


# ---- runtime_env -------------------------------------------------------------------------------


def test_runtime_env_parses_with_ray(runtime_env):
    from ray.runtime_env import RuntimeEnv

    env = RuntimeEnv(**runtime_env)
    assert env.working_dir() == "."
    assert env.env_vars()["HF_HUB_OFFLINE"] == "1"
    assert env.env_vars()["LEADER_CACHE"].startswith("/mnt/leader")
    assert env.env_vars()["LEADER_STORAGE"].startswith("/mnt/leader")
    # every path a paper study reads is named, and the head never decides the workers' accelerator
    assert {"LEADER_LLAMA7B_PATH", "LEADER_QWEN7B_PATH", "LEADER_QWEN18B_PATH", "MIMIC3_ROOT", "MIMIC4_ROOT"} <= set(
        env.env_vars()
    )
    assert "DS_ACCELERATOR" not in env.env_vars()


def test_runtime_env_excludes_data_but_ships_code(runtime_env, tmp_path):
    """Build the real working_dir package Ray would upload, from a repo-shaped tree."""
    from ray._private.runtime_env.packaging import create_package

    repo = tmp_path / "repo"
    files = [
        "leader/__init__.py",
        "leader/data/dataset.py",
        "leader/report/tables.py",
        "studies/mimic3_paper.yaml",
        "cluster/runtime_env.yaml",
        "pyproject.toml",
        ".git/HEAD",
        ".venv/lib/site.py",
        "data/raw/ADMISSIONS.csv",
        "reports/r1/report.md",
        "runs/x/state.json",
        "leader/data/__pycache__/dataset.cpython-311.pyc",
        "features.parquet",
        "sub/dir/metrics.parquet",
        "notes/patients.csv",
    ]
    for f in files:
        (repo / f).parent.mkdir(parents=True, exist_ok=True)
        (repo / f).write_text("x")
    zpath = tmp_path / "pkg.zip"
    create_package(str(repo), zpath, include_gitignore=False, excludes=runtime_env["excludes"])
    shipped = set(zipfile.ZipFile(zpath).namelist())
    assert {
        "leader/__init__.py",
        "leader/data/dataset.py",
        "leader/report/tables.py",
        "studies/mimic3_paper.yaml",
        "pyproject.toml",
    } <= shipped
    leaked = [
        n
        for n in shipped
        if n.startswith((".git", ".venv", "data/", "reports/", "runs/")) or n.endswith((".parquet", ".csv", ".pyc"))
    ]
    assert leaked == []


# ---- DeepSpeed ---------------------------------------------------------------------------------


class _DataParallel:
    """The minimal mpu DeepSpeedConfig asks for: the data-parallel world size."""

    def __init__(self, world_size: int):
        self.world_size = world_size

    def get_data_parallel_world_size(self) -> int:
        return self.world_size


@pytest.fixture()
def _ds_cpu(monkeypatch):
    """DeepSpeed's parser reads the world size from torch.distributed via the mpu only once a
    rank exists; without a process group it silently assumes world size 1. Pretend to be rank 0 so
    the batch arithmetic is checked at the cluster's real world sizes."""
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    import deepspeed.runtime.config as ds_config

    monkeypatch.setattr(ds_config.dist, "get_rank", lambda *a, **k: 0)


@pytest.mark.parametrize("name", DS_CONFIGS)
@pytest.mark.parametrize("world_size", [1, 8, 64])  # one GPU, one p3dn node, 8 nodes
def test_deepspeed_config_parses(name, world_size, _ds_cpu):
    from deepspeed.runtime.config import DeepSpeedConfig

    raw = json.loads((CLUSTER / "deepspeed" / name).read_text())
    assert "auto" not in json.dumps({k: v for k, v in raw.items() if k != "_comment"})
    cfg = DeepSpeedConfig(str(CLUSTER / "deepspeed" / name), mpu=_DataParallel(world_size))
    # V100: fp16 with dynamic loss scaling, never bf16
    assert cfg.float16_config.enabled and cfg.float16_config.loss_scale == 0
    assert not cfg.bfloat16_config.enabled
    assert cfg.train_batch_size == (cfg.train_micro_batch_size_per_gpu * cfg.gradient_accumulation_steps * world_size)
    assert cfg.zero_optimization_stage == (2 if "zero2" in name else 3)
    offload = "offload" in name
    assert (cfg.zero_config.offload_param is not None) == offload
    assert (cfg.zero_config.offload_optimizer is not None) == offload


def test_deepspeed_parser_rejects_bad_config(_ds_cpu):
    """The parser is strict enough to be a useful check (unknown ZeRO keys, bf16 + fp16)."""
    from deepspeed.runtime.config import DeepSpeedConfig

    raw = json.loads((CLUSTER / "deepspeed" / "zero2_v100_fp16.json").read_text())
    typo = copy.deepcopy(raw)
    typo["zero_optimization"]["overlap_com"] = True
    with pytest.raises(Exception, match="overlap_com"):
        DeepSpeedConfig(typo, mpu=_DataParallel(8))
    both = copy.deepcopy(raw)
    both["bf16"] = {"enabled": True}
    with pytest.raises(AssertionError):
        DeepSpeedConfig(both, mpu=_DataParallel(8))


def test_deepspeed_memory_budget_fits_v100_32gb():
    """Back-of-envelope per-GPU memory for LLaMA-7B + LoRA: frozen fp16 weights (replicated for
    ZeRO-2, sharded over 8 GPUs for ZeRO-3, on CPU with offload) must leave >= 12 GB of the 32 GB
    for activations at the configured micro batch."""
    params, gpus, gpu_gb = 6.74e9, 8, 32.0
    for name in DS_CONFIGS:
        raw = json.loads((CLUSTER / "deepspeed" / name).read_text())
        stage = raw["zero_optimization"]["stage"]
        weights_gb = params * 2 / 1e9 / (gpus if stage == 3 else 1)
        if "offload_param" in raw["zero_optimization"]:
            weights_gb = 0.0
        assert gpu_gb - weights_gb >= 12.0, name
        assert raw["train_micro_batch_size_per_gpu"] <= (2 if stage == 2 else 4), name


# ---- KubeRay -----------------------------------------------------------------------------------


def test_kuberay_manifest_shape_and_security(kuberay, launcher):
    kinds = {d["kind"]: d for d in kuberay}
    assert set(kinds) == {"PersistentVolumeClaim", "RayCluster"}
    pvc, rc = kinds["PersistentVolumeClaim"], kinds["RayCluster"]
    assert rc["apiVersion"] == "ray.io/v1" and rc["spec"]["rayVersion"] == "2.60.0"
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]

    head = rc["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    assert head.get("serviceType", "ClusterIP") == "ClusterIP"
    (worker,) = rc["spec"]["workerGroupSpecs"]
    gpu_type = launcher["available_node_types"]["gpu_v100"]
    assert (worker["minReplicas"], worker["maxReplicas"]) == (gpu_type["min_workers"], gpu_type["max_workers"])
    for group in (head, worker):
        spec = group["template"]["spec"]
        claims = [v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v]
        assert claims == [pvc["metadata"]["name"]]
        assert spec["securityContext"]["fsGroup"] == 1000  # the shared volume is writable by the pods' user
        for c in spec["containers"]:
            env = {e["name"]: e.get("value") for e in c["env"]}
            # token auth comes from KubeRay's authOptions, not hand-set env vars
            assert "RAY_AUTH_MODE" not in env and env["LEADER_CACHE"].startswith("/mnt/leader")
            assert env["LEADER_STORAGE"] == "/mnt/leader/storage" and "DS_ACCELERATOR" not in env
            assert any(m["mountPath"] == "/mnt/leader" for m in c["volumeMounts"])
    assert rc["spec"]["authOptions"] == {"mode": "token", "secretName": "leader-ray-token"}
    (init,) = head["template"]["spec"]["initContainers"]
    assert "/mnt/leader/storage" in " ".join(init["command"]) and init["securityContext"]["runAsUser"] == 1000
    (wc,) = worker["template"]["spec"]["containers"]
    assert wc["resources"]["limits"]["nvidia.com/gpu"] == gpu_type["resources"]["GPU"] == 8
    assert worker["rayStartParams"]["num-gpus"] == "8"
    # nothing in the manifest exposes the cluster outside Kubernetes
    text = (CLUSTER / "kuberay-raycluster.yaml").read_text()
    assert "LoadBalancer" not in text.replace("never LoadBalancer", "") and "kind: Ingress" not in text
    assert "0.0.0.0" not in text
