"""What a teacher run writes and reads back: DeepSpeed's own checkpoint (each rank its ZeRO shard,
the frozen base excluded) plus the loop's state, in one folder per reported step; and the final
teacher folder (adapter + head + meta, `save_teacher`).

Why the loop's state beside DeepSpeed's: after a worker dies, Ray Train restarts the group and
the run resumes at the saved step with the same losses, validation history, probe result and
best-validation state, so a resumed run ends exactly as an uninterrupted one.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

STATE, BEST, PROBE_PROBS = "state.json", "best.safetensors", "probe_test_probs.npy"


def keeps(policy: str, kept_val: float | None, val: float) -> bool:
    """Whether the state just validated at `val` becomes the one the teacher keeps. 'best': only
    when strictly above the kept one's validation PRAUC (the probe's included: LP-FT never ends
    below its own linear probe); 'last': always, so the final state is kept (the authors' release
    saves at step MAX_STEPS, whatever its validation)."""
    if policy == "last":
        return True
    if policy != "best":
        raise ValueError(f"unknown checkpoint policy {policy!r}; choose 'best' or 'last'")
    return kept_val is None or val > kept_val


def trainable_state(engine) -> dict:
    """Full (gathered under ZeRO-3) copies of the trainable tensors, on CPU; collective."""
    import deepspeed

    names = [n for n, p in engine.module.named_parameters() if p.requires_grad]
    tparams = [p for p in engine.module.parameters() if p.requires_grad]
    with deepspeed.zero.GatheredParameters(tparams, modifier_rank=None):
        return {n: p.detach().float().cpu().clone() for n, p in zip(names, tparams, strict=False)}


def load_trainable(engine, state: dict, rank: int) -> None:
    """Put `state` (present on every rank) back into the engine's module. ZeRO-3 partitions the
    parameters, so rank 0 writes inside a gather and DeepSpeed re-partitions on exit; under
    ZeRO-2 every rank holds full parameters and writes its own."""
    import deepspeed
    import torch

    params = dict(engine.module.named_parameters())
    tparams = [params[n] for n in state]
    z3 = engine.zero_optimization_stage() == 3
    with deepspeed.zero.GatheredParameters(tparams, modifier_rank=0 if z3 else None):
        if rank == 0 or not z3:
            with torch.no_grad():
                for n, v in state.items():
                    params[n].data.copy_(v.to(params[n].dtype))


def refresh_master_weights(engine) -> None:
    """After writing trainable parameters by hand: ZeRO keeps fp32 master copies (and under fp16
    the module holds fp16 ones), and the next optimizer step would start from the stale masters."""
    refresh = getattr(getattr(engine, "optimizer", None), "refresh_fp32_params", None)
    if callable(refresh):
        refresh()


def write_checkpoint(run, metrics: dict, name: str) -> None:
    """Report one checkpoint of `run` (a worker.TeacherRun) under `name`; collective."""
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as tmp:
        run.engine.save_checkpoint(tmp, tag="ds", exclude_frozen_parameters=True)
        if run.rank == 0:
            (Path(tmp) / STATE).write_text(json.dumps(run.st))
            if run.best_state is not None:
                save_file({k: v.contiguous() for k, v in run.best_state.items()}, str(Path(tmp) / BEST))
            if run.probe_test_probs is not None:  # the Probe baseline row survives a restart
                np.save(Path(tmp) / PROBE_PROBS, run.probe_test_probs)
        run.ctx.report(metrics, tmp, name)


def restore_checkpoint(run, ckpt) -> None:
    """Put `run` back at the step of `ckpt` (a context manager yielding the folder)."""
    from safetensors.torch import load_file

    with ckpt as d:
        d = Path(d)
        run.engine.load_checkpoint(
            str(d), tag="ds", load_module_strict=False, load_optimizer_states=True, load_lr_scheduler_states=True
        )
        run.st = {"nonfinite_steps": 0, "nonfinite_run": 0, **json.loads((d / STATE).read_text())}
        if (d / BEST).exists():
            run.best_state = load_file(str(d / BEST))
        if (d / PROBE_PROBS).exists():
            run.probe_test_probs = np.load(d / PROBE_PROBS)
    if run.st.get("norm"):
        run.engine.module.set_standardization(np.asarray(run.st["norm"]["mean"]), np.asarray(run.st["norm"]["std"]))
    run.resumed_from = run.st["step"]


def save_final(run, out: Path, final: dict, state: dict) -> None:
    """The finished teacher of `run` in `out`: adapter + head + meta (+ the probe's test probabilities)."""
    from leader.teacher.model import save_teacher
    from leader.teacher.recipe import build_model

    cfg, config, engine = run.cfg, run.config, run.engine
    meta = {
        **config["meta"],
        "max_length": cfg.max_length,
        "probe_history": run.st["probe"].get("probe_history", []),
        "metrics": {k: v for k, v in final.items() if k not in ("losses",)},
        "train_config": cfg.model_dump(mode="json"),
    }
    # ZeRO-3 leaves the engine's module partitioned (empty tensors), so peft's
    # save_pretrained would write nothing: save through a fresh unpartitioned copy.
    target = engine.module
    if engine.zero_optimization_stage() == 3:
        target = build_model(cfg, int(config["n_meds"]), config["backbone_path"], config["corpus"], train=False)
        m = engine.module
        target.set_standardization(m.feat_mean.float().cpu().numpy(), m.feat_scale.float().cpu().numpy())
    save_teacher(target, out, meta, trainable_state=state)
    if run.probe_test_probs is not None:
        np.savez(
            out / "probe_test.npz",
            sample_ids=np.asarray(run.data["test"]["ids"], np.int64),
            probs=np.asarray(run.probe_test_probs, np.float32),
        )
