"""GPU readiness checked without a GPU: which device and Ray resources each stage asks for (the
logic, with torch.cuda.is_available / synchronize patched where needed), never a faked result."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from leader.study.spec import load_study
from leader.study.stages import efficiency as eff
from leader.study.stages import features as feat
from leader.study.units import unit_map

SPEC = """\
name: g
storage_path: {out}
datasets:
  - name: syn
    source: synthetic
    prepare: {{n_patients: 60}}
teacher:
  backbones: [tiny-llama]
  options: {options}
resources: {{cpu: 2, gpu: 0.25}}
{resources}
"""


def _spec(tmp_path, resources: str = "", options: str = "{max_steps: 2}"):
    p = tmp_path / "s.yaml"
    p.write_text(SPEC.format(out=tmp_path / "out", resources=resources, options=options))
    return load_study(p)


GPU = "teacher_resources: {num_workers: 8, cpu_per_worker: 4, gpu_per_worker: 1}"
CPU = "teacher_resources: {num_workers: 2, cpu_per_worker: 1}"  # the quickstart's


# ----------------------------------------------------------------------------- efficiency stage
def test_measure_options_gpu_vs_cpu(tmp_path):
    assert eff.measure_options(_spec(tmp_path, GPU)) == {"num_cpus": 4, "num_gpus": 1}
    half = "teacher_resources: {num_workers: 2, cpu_per_worker: 3, gpu_per_worker: 0.5}"
    assert eff.measure_options(_spec(tmp_path, half)) == {"num_cpus": 3, "num_gpus": 1}  # timed alone
    assert eff.measure_options(_spec(tmp_path, CPU)) == {"num_cpus": 2}  # as before: resources.cpu
    assert eff.measure_options(_spec(tmp_path)) == {"num_cpus": 2}


class _Remote:
    """Stands in for the Ray remote function: records the options and the calls."""

    def __init__(self):
        self.options_seen, self.calls = [], []

    def options(self, **kw):
        self.options_seen.append(kw)
        return self

    def remote(self, ds, model_dir, teacher_dir, sizes, compiled=False):
        self.calls.append((model_dir, teacher_dir, sizes, compiled))
        name = "LEADER(T)" if teacher_dir else "LEADER(S)"
        return [{"model": name, "batch_size": b, "latency_ms_per_patient": 1.0} for b in sizes]


def _fake_study(spec, tmp_path, **out):
    """A leader.study.context.Study stand-in: upstream results by role, a state that runs every stage."""
    parts = tmp_path / "parts"
    parts.mkdir(exist_ok=True)
    return SimpleNamespace(
        spec=spec,
        dir=tmp_path,
        parts=parts,
        state=SimpleNamespace(get=lambda name: {"outputs": {"model_dir": "student-dir"}}, stage=lambda u, fn: fn()),
        need=lambda u, role: out.get(role),
    )


def _unit(spec, name: str):
    return unit_map(spec, {"syn": "c"})[name]


@pytest.mark.parametrize("resources, want", [(GPU, {"num_cpus": 4, "num_gpus": 1}), (CPU, {"num_cpus": 2})])
def test_efficiency_stage_requests_the_teachers_device(tmp_path, monkeypatch, resources, want):
    import ray

    rec = _Remote()
    monkeypatch.setattr(eff, "remote_measure", lambda: rec)
    monkeypatch.setattr(ray, "get", lambda x: x)  # the recorder returns rows, not object refs
    spec = _spec(tmp_path, resources)
    fake = _fake_study(spec, tmp_path, data=SimpleNamespace(name="syn"), teacher=tmp_path / "teacher")
    eff.run(fake, _unit(spec, "efficiency/syn/tiny-llama"))
    assert rec.options_seen == [want]
    assert [c[:2] for c in rec.calls] == [("student-dir", None), (None, str(tmp_path / "teacher"))]  # same options
    assert [c[3] for c in rec.calls] == [False, False]  # the compiled student only when the study asks
    assert (fake.parts / "efficiency__syn__tiny-llama.eff.parquet").is_file()


# ----------------------------------------------------------------------------- feature stage
def test_extract_options(tmp_path):
    assert feat.extract_options(_spec(tmp_path, GPU)) == {
        "workers": 8,
        "resources_per_worker": {"CPU": 4, "GPU": 1},
    }
    # CPU studies extract on every teacher worker's cores too (one 1-CPU actor used to leave one idle)
    cpu = {"workers": 2, "resources_per_worker": {"CPU": 1}}
    assert feat.extract_options(_spec(tmp_path, CPU)) == cpu
    set_bs = _spec(tmp_path, CPU, options="{max_steps: 2, eval_batch_size: 4}")
    assert feat.extract_options(set_bs) == {**cpu, "batch_size": 4}


def test_features_stage_passes_options(tmp_path, monkeypatch):
    import leader.features.extract as ex

    seen = {}

    def fake_extract(ds, teacher_dir, out, **kw):
        seen.update(kw)
        return out

    monkeypatch.setattr(ex, "extract_features", fake_extract)
    spec = _spec(tmp_path, GPU, options="{eval_batch_size: 8}")
    fake = _fake_study(spec, tmp_path, data=SimpleNamespace(name="syn"), teacher=tmp_path / "t")
    out = feat.run(fake, _unit(spec, "features/syn/tiny-llama"))
    assert out == tmp_path / "features" / "syn" / "tiny-llama"
    assert seen == {
        "backbone": "tiny-llama",
        "workers": 8,
        "resources_per_worker": {"CPU": 4, "GPU": 1},
        "batch_size": 8,
    }
    seen.clear()
    spec = _spec(tmp_path, CPU)
    fake = _fake_study(spec, tmp_path, data=SimpleNamespace(name="syn"), teacher="t")
    feat.run(fake, _unit(spec, "features/syn/tiny-llama"))
    assert seen == {"backbone": "tiny-llama", "workers": 2, "resources_per_worker": {"CPU": 1}}  # both cores


def test_features_key_has_no_worker_settings(tmp_path):
    """Where and how fast features are computed is not their identity: the key is unchanged."""
    uk = _unit(_spec(tmp_path, GPU), "features/syn/tiny-llama")
    assert uk.config == {"teacher.backbones": "tiny-llama"}


# ----------------------------------------------------------------------------- timing
def test_latency_synchronizes_on_cuda(monkeypatch):
    from leader import efficiency

    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: calls.append(a))
    x = torch.randn(64, 64)
    ms = efficiency.latency_ms(lambda: x @ x, batch=4, repeats=3, device="cuda")
    assert ms > 0 and len(calls) == 6  # before and after each timed call
    calls.clear()
    efficiency.latency_ms(lambda: x @ x, batch=4, repeats=3, device="cpu")
    efficiency.synchronize(torch.device("cpu"))
    assert calls == []
    efficiency.synchronize("cuda:0")
    assert len(calls) == 1


# ----------------------------------------------------------------------------- trainers
def test_train_device_follows_what_torch_sees(monkeypatch):
    from leader.fit import to_device, train_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert train_device() == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert train_device() == torch.device("cpu")
    b = {"diag": torch.ones(2, 1, 3, dtype=torch.int64), "visit_mask": torch.ones(2, 1, dtype=torch.bool)}
    moved = to_device(b, "cpu")
    assert all(moved[k] is b[k] for k in b)  # CPU: the same tensors, nothing copied


def test_trainers_place_the_model_on_train_device(monkeypatch, random_ds):
    """Both trainers ask train_device() where to run (patched here to the CPU, the only device)."""
    import leader.baselines.train as tb
    import leader.student.train as ts
    from leader.config.student import StudentTrainConfig

    asked = []

    def dev():
        asked.append(1)
        return torch.device("cpu")

    monkeypatch.setattr(ts, "train_device", dev)
    monkeypatch.setattr(tb, "train_device", dev)
    cfg = StudentTrainConfig.model_validate(
        {"epochs": 1, "patience": 1, "loss": {"kd": "none"}, "student": {"d_model": 16, "d_embed": 16}}
    )
    res = ts.train_student(random_ds, cfg)
    assert asked == [1] and ts.model_device(res.model) == torch.device("cpu")
    tb.train_baseline(random_ds, "retain", {"epochs": 1})
    assert asked == [1, 1]
