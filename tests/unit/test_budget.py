"""`leader study plan`'s resource section (leader.study.budget): a teacher that cannot fit its GPUs is
refused before a GPU is spent, the meta-device counts equal the built model's, the activation
formula equals what autograd really keeps, and the paper studies print their GPU-hours."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from leader.study import budget as B

REPO = Path(__file__).resolve().parents[2]

# LLaMA-7B as base.yaml trains it (8 workers x micro batch 4 x 2048 tokens, ZeRO-2, fp16,
# gradient checkpointing), on a GPU of `gb` GiB; nothing is extended.
STUDY_7B = """\
name: fit7b
storage_path: {storage}
datasets:
  - name: syn
    source: synthetic
teacher:
  backbones: [llama-7b]
  options: {{batch_size: 4, grad_accum: 1, zero_stage: 2, fp16: true, lora_rank: 8, lora_dropout: 0.1,
            max_length: 2048, gradient_checkpointing: true, max_steps: 100}}
teacher_resources: {{num_workers: 8, cpu_per_worker: 4, gpu_per_worker: 1, gpu_memory_gb: {gb}}}
"""


def _plan(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith("LEADER_") or k == "LEADER_CACHE"}
    e.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "leader.cli.main", "study", "plan", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=e,
    )


def _study(tmp_path: Path, gb: float) -> Path:
    p = tmp_path / f"fit{gb:g}.yaml"
    p.write_text(STUDY_7B.format(storage=tmp_path / "out", gb=gb))
    return p


def test_llama7b_zero2_refused_on_16gb_and_accepted_on_32gb(tmp_path):
    r = _plan(str(_study(tmp_path, 16)))
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    msg = r.stderr[r.stderr.index("error: teacher llama-7b") :]
    lines = msg.splitlines()
    assert lines[1].lstrip().startswith("model states") and lines[2].lstrip().startswith("+ activations")
    assert lines[4].lstrip().startswith("=") and "> 16 GiB per GPU" in lines[4]
    assert "teacher.options.zero_stage: 3" in msg and "cpu_offload" in msg
    need = float(lines[4].split("=")[1].split("GiB")[0])
    assert 16 < need < 32  # ~12.3 GiB of fp16 base + ~4.7 GiB of activations + buckets + reserve
    assert "DOES NOT FIT" in r.stdout  # the estimate is printed either way
    # the same study on 32 GiB (a --set override), as JSON: the same numbers under "resources"
    r = _plan(str(_study(tmp_path, 16)), "--set", "teacher_resources.gpu_memory_gb=32", "--json")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    d = json.loads(r.stdout)  # DeepSpeed's start-up log must not reach stdout
    (t,) = d["resources"]["teachers"]
    assert t["fits"] and t["capacity_gib"] == 32 and t["need_gib"] == pytest.approx(need, abs=0.01)
    assert t["zero_stage"] == 2 and d["resources"]["refused"] == [] and t["arch"]["source"].startswith("published")
    assert t["states_gib"]["frozen_base"] == pytest.approx(6_607_343_616 * 2 / 2**30)
    assert t["tokens"] == 100 * 32 * 2048 and t["train_gpu_h"] > 0
    assert [u["unit"] for u in d["units"]][0] == "data/syn"


def test_a_prepared_dataset_gives_meds_steps_and_inference(tmp_path):
    """|meds|, the train split (epochs x samples / global batch) and the inference prompts come from
    the prepared dataset; nothing is assumed then."""
    from leader.data.cache import PrepareOptions, prepare
    from leader.study.plan import plan
    from leader.study.spec import load_study

    text = STUDY_7B.format(storage=tmp_path / "out", gb=32).replace("max_steps: 100", "epochs: 2, lp_epochs: 1")
    text = text.replace("source: synthetic", "source: synthetic\n    prepare: {n_patients: 200}")
    (tmp_path / "s.yaml").write_text(text)
    spec = load_study(tmp_path / "s.yaml")
    ds = prepare("synthetic", None, PrepareOptions(n_patients=200))
    rows = plan(spec, spec.study_dir())
    (t,) = B.budget(spec, spec.study_dir(), rows)["teachers"]
    n = {k: len(ds.samples(k)) for k in ("train", "val", "test")}
    assert t["facts"]["n_meds"] == ds.n_meds and {k: t["facts"][k] for k in n} == n
    assert t["steps"] == 2 * (n["train"] // 32) and t["arch"]["head"] == 4096 * ds.n_meds + ds.n_meds
    # LP frozen pass (train + val + test) + validation at each epoch end + test + features (all splits)
    assert t["inference_prompts"] == sum(n.values()) + 2 * n["val"] + n["test"] + sum(n.values())
    assert t["inference_gpu_h"] == pytest.approx(t["inference_prompts"] / 1e4 * t["inference_gpu_h_per_10k"])


@pytest.mark.parametrize("name", ["tiny-llama", "minilm"])
def test_meta_device_counts_match_the_built_teacher(name):
    from leader.teacher.model import build_teacher

    a = B.with_head(B.arch(name, 4), 37)
    model = build_teacher(name, 37, 4)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert (a.base, a.trainable) == (frozen, trainable)
    lora = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    assert a.lora == lora and a.head == model.d_hidden * 37 + 37


def test_published_configs_have_the_published_sizes():
    assert B.arch("llama-7b", 8).base == 6_607_343_616  # 6.74 B with the LM head LEADER drops
    assert B.arch("llama-7b", 8).lora == 32 * 8 * (4 * 8192 + 3 * (4096 + 11008))
    assert round(B.arch("qwen-7b", 8).base / 1e9, 1) == 7.1
    assert round(B.arch("qwen-1.8b", 8).base / 1e9, 2) == 1.53


def _zero3() -> dict:
    return json.loads((REPO / "cluster/deepspeed/zero3_v100_fp16.json").read_text())


def test_zero3_states_shrink_with_world_size_zero2_keeps_the_base():
    a = B.with_head(B.arch("llama-7b", 8), 300)
    z3 = [B.model_states(a, _zero3(), w, 2) for w in (1, 2, 4, 8, 64)]
    assert all(x["total"] > y["total"] for x, y in zip(z3, z3[1:], strict=False))
    assert z3[-1]["frozen_base"] == pytest.approx(2 * a.base / 64)
    z2 = [B.model_states(a, {"zero_optimization": {"stage": 2}}, w, 2) for w in (1, 8)]
    assert z2[0]["frozen_base"] == z2[1]["frozen_base"] == 2 * a.base  # replicated
    assert z2[0]["trainable"] > z2[1]["trainable"]
    # DeepSpeed's estimator on the trainable part only: 2 + 18 / world bytes per parameter
    assert z2[1]["trainable"] == 2 * a.trainable + int(18 * a.trainable / 8)


def _lora_llama(n_layers: int, attn: str, ckpt: bool = False, dropout: float = 0.0):
    """A LLaMA-shaped fp16 model with LoRA on every target, the base frozen, as build_teacher makes it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaModel

    from leader.teacher.backbones import DECODER_TARGETS

    cfg = LlamaConfig(**_DIMS, num_hidden_layers=n_layers, vocab_size=500, attn_implementation=attn)
    torch.manual_seed(0)
    m = get_peft_model(LlamaModel(cfg), LoraConfig(r=8, lora_dropout=dropout, target_modules=list(DECODER_TARGETS)))
    m = m.half()
    for n, p in m.named_parameters():
        p.requires_grad = "lora_" in n
    if ckpt:
        m.get_base_model().activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    return m.train()


def _batch(s: int = 96, b: int = 2):
    import torch

    mask = torch.ones(b, s, dtype=torch.long)
    mask[0, -10:] = 0  # right padding: the model passes a padding mask, as in training
    return {"input_ids": torch.randint(0, 500, (b, s)), "attention_mask": mask, "use_cache": False}


def _saved_bytes(n_layers: int, attn: str, ckpt: bool = False, dropout: float = 0.0) -> int:
    """Bytes of the tensors autograd saves for backward (parameters excluded)."""
    import torch

    m = _lora_llama(n_layers, attn, ckpt, dropout)
    params = {p.untyped_storage().data_ptr() for p in m.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        st = t.untyped_storage()
        if st.data_ptr() and st.data_ptr() not in params:
            seen[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        m(**_batch())
    return sum(seen.values())


def _peak_bytes(m, train: bool) -> int:
    """Peak bytes of live tensor storages during a forward (+ backward), parameters excluded:
    every op's outputs are tracked until freed (transients included, unlike saved tensors)."""
    import weakref

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    params = {p.untyped_storage().data_ptr() for p in m.parameters()}
    state = {"live": 0, "peak": 0}
    live: set[int] = set()

    def free(ptr: int, n: int) -> None:
        live.discard(ptr)
        state["live"] -= n

    class Track(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                st = t.untyped_storage() if isinstance(t, torch.Tensor) else None
                if st is not None and st.data_ptr() and st.data_ptr() not in live | params:
                    live.add(st.data_ptr())
                    state["live"] += st.nbytes()
                    state["peak"] = max(state["peak"], state["live"])
                    weakref.finalize(st, free, st.data_ptr(), st.nbytes())
            return out

    with Track():
        if train:
            m(**_batch()).last_hidden_state[:, -1].float().pow(2).mean().backward()
        else:
            with torch.no_grad():
                m.eval()(**_batch())
    return state["peak"]


_DIMS = dict(hidden_size=256, intermediate_size=688, num_attention_heads=4, num_key_value_heads=4)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_activation_formula_is_what_autograd_keeps(attn):
    """One block's saved tensors (2 layers minus 1: the first block's input norm keeps nothing
    behind frozen embeddings) against the formula, on CPU in fp16; LoRA dropout 0."""
    s, b = 96, 2
    a = B.Arch("t", "", "decoder", attn, 256, 2, 4, 688, 0, 0, 0, 0, 0)
    want = s * b * B._layer_per_token(a, 2, False, 8) + b * B._scores(a, s, 2)
    got = _saved_bytes(2, attn) - _saved_bytes(1, attn)
    assert got == pytest.approx(want, rel=0.02)
    # checkpointing keeps each block's input (+ the final norm's fp32 input, the mask, RoPE tables)
    kept = _saved_bytes(3, attn, ckpt=True) - _saved_bytes(2, attn, ckpt=True)
    assert kept == pytest.approx(2 * s * b * 256, rel=0.02)


def test_lora_dropout_term_is_what_autograd_keeps():
    """LoRA dropout 0.1 (the authors' release): each adapted Linear keeps its dropped input and a
    mask; on CPU the mask is in the input's dtype (CUDA's fused dropout keeps a bool mask)."""
    s, b = 96, 2
    a = B.Arch("t", "", "decoder", "sdpa", 256, 3, 4, 688, 0, 0, 0, 0, 0)
    want = s * b * B._layer_per_token(a, 2, True, 8, mask=2) + b * B._scores(a, s, 2)
    got = _saved_bytes(3, "sdpa", dropout=0.1) - _saved_bytes(2, "sdpa", dropout=0.1)
    assert got == pytest.approx(want, rel=0.02)


def test_training_and_eval_peaks_bound_what_a_step_allocates():
    """The whole estimate (kept activations + backward transients; the eval forward's live set) is
    an upper bound of the measured peak, and not a loose one."""
    from types import SimpleNamespace

    s, b, L = 96, 2, 4
    a = B.Arch("t", "", "decoder", "sdpa", 256, L, 4, 688, 0, 0, 0, 0, 0)
    cfg = SimpleNamespace(
        batch_size=b, max_length=s, eval_batch_size=b, lora_dropout=0.0, lora_rank=8, gradient_checkpointing=True
    )
    est = B.activations(a, cfg, 2, n_meds=0)
    got = _peak_bytes(_lora_llama(L, "sdpa", ckpt=True), train=True)
    assert got <= est["train_total"] <= 1.25 * got
    got = _peak_bytes(_lora_llama(L, "sdpa"), train=False)
    assert got <= est["eval"] <= 1.25 * got


@pytest.mark.parametrize("study", ["mimic3_paper", "mimic4_paper"])
def test_paper_studies_print_gpu_hours(study, tmp_path):
    env = {"MIMIC3_ROOT": str(tmp_path), "MIMIC4_ROOT": str(tmp_path), "LEADER_STORAGE": str(tmp_path / "out")}
    r = _plan(f"studies/{study}.yaml", env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout[r.stdout.index("resources (") :]
    for bb in ("llama-7b", "qwen-7b", "qwen-1.8b"):
        assert f"/{bb}: published" in out
    assert out.count("of 32 GiB: fits") == 3 and "GPU-h for the whole study" in out
    # the paper preset's teacher: the release's 3000 steps (experiment/llm_cls.bash) for both
    assert "cost: 3000 steps" in out and "student: 477 trial(s)" in out


def test_cpu_study_plan_stays_torch_free():
    code = (
        "import sys, contextlib; from leader.cli.main import app; "
        "sys.argv=['leader','study','plan','studies/quickstart.yaml']\n"
        "with contextlib.suppress(SystemExit): app()\n"
        "print('HEAVY', sorted(m for m in ('torch', 'ray', 'transformers', 'deepspeed') if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "HEAVY []" in r.stdout and "resources (" not in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
