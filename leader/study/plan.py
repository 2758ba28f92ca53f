"""`leader study plan`: what a run would do, unit by unit, before cluster hours are spent.
Each unit is `reuse`, `run`, `extend` (a sweep given more trials) or `re-run because <field>
changed (old -> new)`, with its trial counts and a rough cost from recorded seconds of the
same or a similar unit. Reads state.json and the study's units (leader.study.units, torch-free).
With a GPU-trained teacher or GPU trials, `format_budget` adds leader.study.budget's resource
section below (teacher memory per GPU and GPU-hours: that part imports torch and DeepSpeed); the
student-trial cost, from measured Tune trial durations, is computed here."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np

from leader.study.keys import verify_outputs, why
from leader.study.spec import StudySpec
from leader.study.units import Unit, units

DEFAULT_TRIAL_S = 300.0  # seconds per student / baseline trial when no finished trial was measured


def _seconds(stages: dict, uk: Unit) -> tuple[float | None, int]:
    """(recorded seconds, trials they covered) of this unit, else of a unit of the same stage."""

    def ran(out: dict) -> int:
        n = out.get("trials_run", out.get("trials", 0))
        return int(n) if isinstance(n, (int, float)) else len(n or {})

    own = stages.get(uk.name, {}).get("outputs", {})
    if "seconds" in own:
        return float(own["seconds"]), ran(own)
    for name, st in stages.items():
        if name.split("/")[0] == uk.stage and "seconds" in st.get("outputs", {}):
            return float(st["outputs"]["seconds"]), ran(st["outputs"])
    return None, 0


def _grid_action(uk: Unit, old: dict, study_dir: Path) -> tuple[str, int]:
    trials = old.get("outputs", {}).get("trials", {}) if old.get("key") == uk.key else {}
    kept = [tk for tk in uk.trial_keys if tk in trials and not verify_outputs(study_dir, trials[tk].get("files", {}))]
    new = len(uk.trial_keys) - len(kept)
    reason = why(old, uk)
    if old.get("key") == uk.key and (reason is None or kept):
        return ("reuse" if not new else f"run {new} new or unfinished trial(s), {len(kept)} kept"), new
    return reason or "run", new


def _sweep_action(uk: Unit, old: dict, study_dir: Path) -> tuple[str, int]:
    reason = why(old, uk)
    if old.get("key") != uk.key:
        return reason or "run", uk.trials
    exps = [e for e in old.get("outputs", {}).get("experiments", []) if e.get("done")]
    have = sum(e["n"] for e in exps) if not verify_outputs(study_dir, old.get("files", {})) else 0
    if have == uk.trials and reason is None:
        return "reuse", 0
    if 0 < have < uk.trials:
        return (
            f"extend: {uk.trials - have} new trial(s), {have} kept (search.num_samples {have} -> {uk.trials})",
            uk.trials - have,
        )
    if have > uk.trials:
        return f"re-run because search.num_samples changed ({have} -> {uk.trials})", uk.trials
    return reason or "run", uk.trials


def plan(spec: StudySpec, study_dir: Path) -> list[dict]:
    """One row per unit: name, action, trials to run, estimated seconds (None if unknown)."""
    sp = study_dir / "state.json"
    stages = json.loads(sp.read_text())["stages"] if sp.is_file() else {}
    rows = []
    for uk in units(spec):
        name, old = uk.name, stages.get(uk.name, {})
        if uk.kind == "grid":
            action, todo = _grid_action(uk, old, study_dir)
        elif uk.kind == "sweep":
            action, todo = _sweep_action(uk, old, study_dir)
        else:
            action, todo = why(old, uk) or "reuse", uk.trials
            if action == "reuse" and (bad := verify_outputs(study_dir, old.get("files", {}))):
                action = f"re-run because its output {bad}"
        secs, n = _seconds(stages, uk)
        est = None if action == "reuse" else (secs * todo / n if secs is not None and n and todo else secs)
        rows.append(
            {
                "unit": name,
                "action": action,
                "trials": uk.trials,
                "to_run": todo if action != "reuse" else 0,
                "est_s": est,
            }
        )
    return rows


def format_plan(rows: list[dict], study_dir: Path) -> str:
    lines = [f"plan against {study_dir}"]
    for r in rows:
        tr = f"{r['to_run']}/{r['trials']} trials" if r["trials"] else ""
        est = f"~{r['est_s']:.0f} s" if r["est_s"] is not None else ("?" if r["action"] != "reuse" else "")
        lines.append(f"  {r['unit']:<34} {tr:<14} {est:>8}  {r['action']}")
    todo = [r for r in rows if r["action"] != "reuse"]
    known = sum(r["est_s"] or 0 for r in todo)
    unknown = sum(1 for r in todo if r["est_s"] is None)
    lines.append(
        f"{len(rows) - len(todo)} unit(s) reused, {len(todo)} to run; "
        f"{sum(r['to_run'] for r in todo)} trial(s); estimated >= {known:.0f} s of recorded work"
        + (f" plus {unknown} unit(s) never timed" if unknown else "")
    )
    return "\n".join(lines)


def _gib(d: dict, keys: dict[str, str]) -> str:
    return " + ".join(f"{label} {d[k]:.2f}" for k, label in keys.items() if d.get(k))


def _teacher_lines(t: dict) -> list[str]:
    """One teacher's block of the resource section (numbers from leader.study.budget)."""
    a, c, f, s, act = t["arch"], t["config"], t["facts"], t["states_gib"], t["activations_gib"]
    M = 1e6
    lines = [
        f"  teacher {t['dataset']}/{t['backbone']}: {a['source']}",
        f"    {a['base'] / 1e9:.2f} B frozen params ({a['matmul'] / 1e9:.2f} B in Linear layers); trainable "
        f"{(a['lora'] + a['head']) / M:.2f} M = LoRA r={c['lora_rank']} on {a['lora_modules']} Linear "
        f"{a['lora'] / M:.2f} M + head {a['head'] / M:.2f} M (|meds| {f['n_meds']}, {f['n_meds_from']})",
        f"    ZeRO-{t['zero_stage']} on {t['gpus']:g} GPU(s), micro batch {c['batch_size']} x {c['max_length']}"
        f" tokens, gradient checkpointing {'on' if c['gradient_checkpointing'] else 'off'}, "
        f"{'fp16' if t['dtype_bytes'] == 2 else 'fp32'}, attention {a['attn']}",
        f"    memory per GPU: model states {s['total']:.2f} GiB ("
        + _gib(s, {"frozen_base": "frozen base", "zero3_gathered": "ZeRO-3 gathered", "trainable": "LoRA/head"})
        + f" + ZeRO buckets {s['buckets']:.2f})",
        f"      + activations {max(act['train_total'], act['eval']):.2f} GiB (training: "
        + _gib(act, {"layer_inputs": "layer inputs", "recomputed_layer": "recomputed layer", "layers": "layers"})
        + f" + norm/mask/head {act['final_norm_mask_head']:.2f} + backward {act['backward_transients']:.2f} = "
        f"{act['train_total']:.2f}; eval forward at batch {c['eval_batch_size']}: {act['eval']:.2f})",
        f"      + reserve {t['reserve_gib']:.2f} = {t['need_gib']:.2f} GiB of {t['capacity_gib']:g} GiB: "
        + ("fits" if t["fits"] else "DOES NOT FIT" + ("" if t["to_run"] else " (reused: not trained again)")),
    ]
    if t["tokens"]:
        lines.append(
            f"    cost: {t['steps']} steps ({t['steps_from']}) x {t['tokens'] // t['steps'] // c['max_length']} prompts"
            f" x {c['max_length']} tokens = {t['tokens'] / M:.1f} M tokens x {t['flops_per_token'] / 1e9:.1f} GFLOP"
            f" = {t['train_gpu_h']:.1f} GPU-h ({t['train_gpu_h'] / t['gpus']:.1f} h on {t['gpus']:g} GPUs)"
        )
    else:
        lines.append(f"    cost: steps {t['steps_from']}")
    per = t["inference_gpu_h_per_10k"]
    if t["inference_gpu_h"] is not None:
        lines.append(f"      + inference {t['inference_prompts']} prompts = {t['inference_gpu_h']:.1f} GPU-h")
    else:
        lines.append(f"      + inference {per:.2f} GPU-h per 10k prompts ({t['dataset']} not prepared: count unknown)")
    return lines


def format_refusal(t: dict) -> str:
    """Why a teacher cannot fit, one line per number, and what to change."""
    c, s, a = t["config"], t["states_gib"], t["activations_gib"]
    tries = [
        "teacher.options.gradient_checkpointing: true" if not c["gradient_checkpointing"] else "",
        "a smaller teacher.options.batch_size" if c["batch_size"] > 1 else "",
        f"a smaller teacher.options.eval_batch_size ({c['eval_batch_size']})" if t["binds"] == "eval forward" else "",
        "teacher.options.zero_stage: 3" if t["zero_stage"] != 3 else "",
        "teacher.options.cpu_offload: true" if not c["cpu_offload"] else "",
    ]
    return "\n".join(
        [
            f"teacher {t['backbone']} on {t['dataset']} does not fit its GPUs (ZeRO-{t['zero_stage']}, "
            f"{c['workers']} ranks, micro batch {c['batch_size']} x {c['max_length']} tokens, gradient "
            f"checkpointing {'on' if c['gradient_checkpointing'] else 'off'}):",
            f"  model states {s['total']:.2f} GiB (frozen base {s['frozen_base'] + s['zero3_gathered']:.2f}"
            f" + LoRA/head {s['trainable']:.2f} + ZeRO buckets {s['buckets']:.2f})",
            f"  + activations {max(a['train_total'], a['eval']):.2f} GiB ({t['binds']})",
            f"  + runtime reserve {t['reserve_gib']:.2f} GiB",
            f"  = {t['need_gib']:.2f} GiB > {t['capacity_gib']:g} GiB per GPU (teacher_resources.gpu_memory_gb)",
            "  try: " + "; ".join(x for x in tries if x) + "; or a larger GPU",
        ]
    )


def format_budget(b: dict) -> str:
    """The resource section under the plan: every number, then every assumption behind it."""
    lines = ["resources (leader/study/budget.py):"]
    for t in b["teachers"]:
        lines += _teacher_lines(t)
    s = b["students"]
    lines.append(
        f"  student: {s['trials']} trial(s) ({s['to_run']} to run) x {s['seconds_per_trial']:.0f} s "
        f"({s['seconds_from']}) x {s['gpu_per_trial']:g} GPU = {s['gpu_h'] - s['baseline_gpu_h']:.1f} GPU-h"
    )
    if s["baseline_trials"]:
        lines.append(
            f"  tuned baselines: {s['baseline_trials']} trial(s) x {s['baseline_seconds_per_trial']:.0f} s x "
            f"{s['gpu_per_trial']:g} GPU = {s['baseline_gpu_h']:.1f} GPU-h, {s['baseline_cpu_h']:.1f} CPU-h "
            f"({s['baseline_seconds_from']})"
        )
    lines.append(
        f"  total: {b['total_gpu_h']:.1f} GPU-h for the whole study, {b['total_gpu_h_to_run']:.1f} GPU-h for what "
        "this plan runs (teacher training + known inference + student trials)"
    )
    if b["unknown"]:
        lines.append(f"  not counted: the inference of {', '.join(b['unknown'])} (dataset not prepared)")
    lines += ["  assumptions:"] + [f"    - {x}" for x in b["assumptions"]]
    return "\n".join(lines)


def trial_seconds(study_dir: Path, kinds: tuple[str, ...]) -> tuple[float, str]:
    """Median measured duration of finished Tune trials of these experiment kinds, else a default."""
    times = []
    for rj in sorted((study_dir / "tune").glob("*/*/result.json")):
        if rj.parent.parent.name.split("-")[0] in kinds:
            lines = rj.read_text().strip().splitlines()
            last = json.loads(lines[-1]) if lines else {}
            if last.get("time_total_s"):
                times.append(float(last["time_total_s"]))
    if times:
        return statistics.median(times), f"median of {len(times)} measured trial(s) in {study_dir / 'tune'}"
    return DEFAULT_TRIAL_S, f"assumed: no finished trial in {study_dir / 'tune'}"


def student_cost(spec: StudySpec, study_dir: Path, rows: list[dict]) -> dict:
    """Student trials (sweep + ablation/sensitivity grid) and tuned baselines, each trial with the
    study's `resources` (cpu, gpu) at its measured (else assumed) duration."""
    secs, how = trial_seconds(study_dir, ("sweep", "grid"))
    bsecs, bhow = trial_seconds(study_dir, ("baseline",))
    st = [r for r in rows if r["unit"].split("/")[0] in ("sweep", "grid")]
    bl = [r for r in rows if r["unit"].startswith("baseline/") and r["trials"]]
    n, todo, g = sum(r["trials"] for r in st), sum(r["to_run"] for r in st), spec.resources.gpu
    nb = sum(r["trials"] for r in bl)
    return {
        "trials": n,
        "to_run": todo,
        "seconds_per_trial": secs,
        "seconds_from": how,
        "gpu_per_trial": g,
        "gpu_h": (n * secs + nb * bsecs) * g / 3600,
        "gpu_h_to_run": (todo * secs + sum(r["to_run"] for r in bl) * bsecs) * g / 3600,
        "baseline_gpu_h": nb * bsecs * g / 3600,
        "baseline_trials": nb,
        "baseline_to_run": sum(r["to_run"] for r in bl),
        "baseline_seconds_per_trial": bsecs,
        "baseline_seconds_from": bhow,
        "baseline_cpu_h": nb * bsecs * spec.resources.cpu / 3600,
    }


# ----------------------------------------------------------------------------- power
PAPER_KD_EFFECT = 0.012  # Table IV, MIMIC-III: LEADER(S) - LEADER(S) w/o KD, PRAUC


def _test_patients(d) -> tuple[int | None, str]:
    """Test patients of a dataset: counted when it is prepared, else its split share of the
    synthetic cohort's declared size (other sources: unknown until prepared)."""
    from leader.study.budget import dataset_facts

    facts = dataset_facts(d)
    if facts["prepared"]:
        import pandas as pd

        pat = pd.read_parquet(Path(facts["prepared"]) / "patients.parquet", columns=["split"])
        return int((pat["split"] == "test").sum()), "counted in the prepared dataset"
    if d.source == "synthetic":
        share = d.prepare.split_ratios[2]
        return int(round(d.prepare.n_patients * share)), f"{share:g} of prepare.n_patients (not prepared yet)"
    return None, "dataset not prepared: run `leader data prepare` or the study once"


def _pilot_sd(study_dir: Path, dataset: str) -> tuple[float, str]:
    """Per-patient SD of a PRAUC difference: the median over this study's finished paired tests
    (results/paired.parquet), else the stated default."""
    from leader.significance import DEFAULT_PER_PATIENT_SD, sd_from_interval

    p = study_dir / "results" / "paired.parquet"
    if p.is_file():
        import pandas as pd

        df = pd.read_parquet(p)
        df = df[(df["dataset"] == dataset) & (df["group"] == "overall") & (df["n_patients"] >= 2)]
        if len(df):
            sd = float(np.median(sd_from_interval(df["ci_low"], df["ci_high"], df["n_patients"])))
            return sd, f"median of {len(df)} paired test(s) in {p}"
    return DEFAULT_PER_PATIENT_SD, f"assumed {DEFAULT_PER_PATIENT_SD:g} (no pilot results)"


def power_lines(spec: StudySpec, study_dir: Path) -> list[str]:
    """Per dataset: the smallest PRAUC difference this study's test split and seeds can detect
    (paired test, alpha 0.05, 80 % power), against the paper's KD effect."""
    from leader.significance import min_detectable_difference

    lines = ["power (paired patient test, alpha 0.05, 80 % power; leader.significance):"]
    for d in spec.datasets:
        n, n_how = _test_patients(d)
        sd, sd_how = _pilot_sd(study_dir, d.name)
        if n is None:
            lines.append(f"  {d.name}: test patients unknown ({n_how})")
            continue
        mde = min_detectable_difference(sd, n, len(spec.seeds))
        warn = f"  WARNING: above the paper's KD effect +{PAPER_KD_EFFECT}" if mde > PAPER_KD_EFFECT else ""
        lines.append(
            f"  {d.name}: minimum detectable PRAUC difference {mde:.3f} with {n} test patients ({n_how}), "
            f"{len(spec.seeds)} seed(s), per-patient SD {sd:.3f} ({sd_how}){warn}"
        )
    return lines
