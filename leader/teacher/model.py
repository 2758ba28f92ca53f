"""LEADER(T): a frozen LLM backbone + LoRA (upstream peft) + Linear(hidden, |meds|) head, BCE.

Contract:
- `build_teacher(backbone_name, n_meds, lora_rank=8, ..., corpus=None) -> TeacherModel`;
  `model(input_ids, attention_mask) -> (logits (B, M), hidden (B, d_h))`; `model.loss(logits, y)`
  is BCE-with-logits. The head is a separate trainable nn.Linear (not inside the peft model), so
  the saved artefact is exactly adapter + head.
- `save_teacher(model, dir, meta)` writes adapter/ (peft), head.safetensors and meta.json
  (backbone, dataset fingerprint, n_meds, d_hidden, max_length, prompt options, metrics...).
  Base weights are never written: they come back from the registry.
- `load_teacher(dir) -> LoadedTeacher` with `.infer(prompts, batch_size=) -> (probs float32
  (N, M), hidden float16 (N, d_h))`, `.d_hidden`, `.meta`, `.tokenizer`; its LoRA is merged into
  the base (inference only). Prompts are truncated on the LEFT so "... should be prescribed:" survives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from leader import atomic
from leader.errors import CheckpointError, ConfigError, read_json
from leader.teacher.backbones import BackboneSpec, pool, resolve_backbone
from leader.teacher.inputs import encoded_batches

META = "meta.json"
HEAD = "head.safetensors"
ADAPTER = "adapter"


@dataclass
class TeacherConfig:
    backbone: str
    n_meds: int
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    seed: int = 0
    backbone_path: str | None = None
    pooling: str = "last"  # TeacherTrainConfig.pooling: 'last' | 'eos'


class Fp32Linear(nn.Linear):
    """nn.Linear that computes in fp32 whatever its weights' dtype: under DeepSpeed fp16 they are
    fp16 copies of fp32 masters, and a standardised input (divided by a per-dimension std as small
    as the 1e-6 floor) overflows fp16. Still called as a module, so ZeRO-3 gathers its weights."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.float()
        with torch.autocast(x.device.type, enabled=False):  # bf16 autocast covers the backbone only
            return nn.functional.linear(x.float(), self.weight.float(), bias)


class _HeadMixin:
    """The Linear(d_h, |meds|) head with its fixed standardisation: shared by the teacher and by
    the CPU copy the LP stage fits (under ZeRO-3 the engine's own head is partitioned)."""

    head: nn.Linear
    feat_mean: torch.Tensor
    feat_scale: torch.Tensor

    def _init_head(self, d_hidden: int, n_meds: int) -> None:
        self.head = Fp32Linear(d_hidden, n_meds)  # replaces the LM head
        # Fixed standardisation of the pooled state before the head (identity until set): pooled
        # sentence features are narrow (MiniLM: per-dimension std ~0.07), so an unscaled head
        # needs weights of norm ~100 that a small LR never reaches. Buffers, not parameters.
        self.register_buffer("feat_mean", torch.zeros(d_hidden))
        self.register_buffer("feat_scale", torch.ones(d_hidden))

    def head_logits(self, h: torch.Tensor) -> torch.Tensor:
        """(B, d_h) pooled state -> (B, M) logits, in fp32 (see Fp32Linear); also used on cached
        frozen features (LP)."""
        x = (h.float() - self.feat_mean.float()) / self.feat_scale.float()  # (B, d_h)
        return self.head(x)  # (B, M)

    def restore_fp32_buffers(self) -> None:
        """DeepSpeed's fp16 engine calls module.half(), which also turns the standardisation
        buffers to fp16; they are statistics, not weights, and stay fp32."""
        for name in NORM_KEYS:
            setattr(self, name, getattr(self, name).float())

    def init_head_from_prior(self, freq: np.ndarray) -> None:
        """Start at the drug-frequency prior: bias = logit(train frequency), weights 0. A default
        head starts at p = 0.5 for every drug (true rate ~15 %) and spends its first epochs
        unlearning that."""
        f = np.clip(np.asarray(freq, dtype=np.float64), 1e-4, 1 - 1e-4)
        with torch.no_grad():
            self.head.bias.copy_(torch.from_numpy(np.log(f / (1 - f))).to(self.head.bias.dtype))
            self.head.weight.zero_()

    def set_standardization(self, mean: np.ndarray, std: np.ndarray) -> None:
        dev = self.feat_mean.device
        with torch.no_grad():
            self.feat_mean.copy_(torch.as_tensor(mean, dtype=self.feat_mean.dtype, device=dev))
            self.feat_scale.copy_(torch.as_tensor(np.maximum(std, 1e-6), dtype=self.feat_scale.dtype, device=dev))


class TeacherHead(_HeadMixin, nn.Module):
    """The head alone, on CPU (the LP stage fits it on cached features)."""

    def __init__(self, d_hidden: int, n_meds: int, state: dict[str, torch.Tensor] | None = None):
        super().__init__()
        self._init_head(d_hidden, n_meds)
        if state:
            self.head.load_state_dict({k: v.float().cpu() for k, v in state.items()})


class TeacherModel(_HeadMixin, nn.Module):
    def __init__(self, backbone: nn.Module, spec: BackboneSpec, tokenizer, cfg: TeacherConfig):
        super().__init__()
        self.backbone = backbone  # peft-wrapped
        self.spec, self.tokenizer, self.cfg = spec, tokenizer, cfg
        self.d_hidden = int(backbone.config.hidden_size)
        self._init_head(self.d_hidden, cfg.n_meds)
        self.precision = "fp32"  # what the backbone computes in (leader.precision); set_precision
        self.autocast_dtype: torch.dtype | None = None

    @property
    def append_eos(self) -> bool:
        """pooling 'eos': every prompt ends with the tokenizer's EOS (leader.teacher.inputs.encode)."""
        return self.cfg.pooling == "eos"

    def set_precision(self, used: str, device_type: str = "cpu", cpu_kernels: bool = True) -> None:
        """The backbone's number format; on a CPU also its kernels (leader.teacher.cpu_kernels)."""
        from leader.precision import autocast_dtype

        self.precision, self.autocast_dtype = used, autocast_dtype(used, device_type)
        if device_type == "cpu" and cpu_kernels:
            from leader.teacher.cpu_kernels import prepare_for_cpu

            prepare_for_cpu(self.backbone, self.autocast_dtype)

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # use_cache=False: one forward per prompt, never a generation; LLaMA's default cache would
        # keep ~0.5 MiB of keys/values per token (16 GiB at eval batch 16 x 2048 tokens on 7B).
        dt = self.autocast_dtype
        with torch.autocast(input_ids.device.type, dtype=dt or torch.bfloat16, enabled=dt is not None):
            out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        # eos: the state AT the appended EOS, the last attended token, whatever the backbone's kind
        kind = "decoder" if self.append_eos else self.spec.kind
        h = pool(out.last_hidden_state, attention_mask, kind)  # (B, d_h)
        return h.float() if dt is not None else h

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.pooled(input_ids, attention_mask)  # (B, d_h): the feature-KD target
        return self.head_logits(h), h

    @staticmethod
    def loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.binary_cross_entropy_with_logits(logits.float(), y.float())

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if _is_trainable_key(k)}


def _is_trainable_key(k: str) -> bool:
    return k.startswith("head.") or "lora_" in k


NORM_KEYS = ("feat_mean", "feat_scale")  # saved with the head (fixed, but part of the teacher)


def build_teacher(
    backbone_name: str,
    n_meds: int,
    lora_rank: int = 8,
    *,
    lora_alpha: int = 16,
    lora_dropout: float = 0.0,
    seed: int = 0,
    backbone_path: str | None = None,
    corpus: list[str] | None = None,
    dtype: torch.dtype | None = None,
    pooling: str = "last",
) -> TeacherModel:
    """Frozen backbone + fresh LoRA + fresh head, all initialised from `seed`."""
    from peft import LoraConfig, get_peft_model

    cfg = TeacherConfig(backbone_name, n_meds, lora_rank, lora_alpha, lora_dropout, seed, backbone_path, pooling)
    spec = resolve_backbone(backbone_name, backbone_path)
    base, tok = spec.load(corpus, dtype=dtype)
    if pooling == "eos" and tok.eos_token_id is None:
        raise ConfigError(f"backbone {backbone_name!r}: pooling: eos needs an EOS token and its tokenizer has none")
    names = {n.rsplit(".", 1)[-1] for n, _ in base.named_modules()}
    targets = [t for t in spec.lora_targets if t in names]
    if not targets:
        raise CheckpointError(f"backbone {backbone_name!r}: none of the LoRA targets {spec.lora_targets} exist")
    torch.manual_seed(seed)
    peft_model = get_peft_model(
        base,
        LoraConfig(r=lora_rank, lora_alpha=lora_alpha, lora_dropout=lora_dropout, target_modules=targets, bias="none"),
    )
    model = TeacherModel(peft_model, spec, tok, cfg)
    for n, p in model.named_parameters():
        p.requires_grad = _is_trainable_key(n)
    # LoRA + head train in fp32 even on an fp16 base (small; keeps Adam stable).
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    return model


def enable_gradient_checkpointing(model: TeacherModel) -> None:
    """Trade compute for memory: backbone activations are recomputed in backward. Non-reentrant
    checkpointing, so gradients reach the LoRA weights although the embeddings are frozen."""
    base = model.backbone.get_base_model()  # the transformers model under peft
    base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})


def save_teacher(
    model: TeacherModel,
    out_dir: str | Path,
    meta: dict | None = None,
    trainable_state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Adapter + head + meta.json only. `trainable_state` overrides the module's tensors (ZeRO-3
    callers pass gathered full parameters)."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = trainable_state if trainable_state is not None else model.trainable_state()
    head = {k[len("head.") :]: v.detach().float().cpu().contiguous() for k, v in state.items() if k.startswith("head.")}
    head.update({k: getattr(model, k).detach().float().cpu().contiguous() for k in NORM_KEYS})
    lora = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    if lora:
        from peft import set_peft_model_state_dict  # noqa: F401  (ensures peft present)

        model.backbone.load_state_dict(
            {k: v.to(dict(model.backbone.named_parameters())[k].dtype) for k, v in lora.items()}, strict=False
        )
    model.backbone.save_pretrained(str(out / ADAPTER))
    save_file(head, str(out / HEAD))
    cfg = model.cfg
    full = {
        "backbone": cfg.backbone,
        "backbone_path": cfg.backbone_path,
        "n_meds": cfg.n_meds,
        "d_hidden": model.d_hidden,
        "lora_rank": cfg.lora_rank,
        "lora_alpha": cfg.lora_alpha,
        "kind": model.spec.kind,
        **({"pooling": cfg.pooling} if cfg.pooling != "last" else {}),  # absent: 'last' (older teachers too)
        "precision": model.precision,  # what the backbone computed in (leader.precision)
        "tokenizer_dir": str(model.spec.path) if model.spec.path else None,
        **(meta or {}),
    }
    model.tokenizer.save_pretrained(str(out / "tokenizer"))  # tiny tokenizers are corpus-specific
    atomic.write_text(out / META, json.dumps(full, indent=1, default=str))  # last: marks a complete save
    return out


@dataclass
class LoadedTeacher:
    model: TeacherModel
    meta: dict

    @property
    def d_hidden(self) -> int:
        return self.model.d_hidden

    @property
    def tokenizer(self):
        return self.model.tokenizer

    def prompts(self, ds, sample_ids) -> list[str]:
        """The prompts this teacher was trained on (same fitting to its tokenizer)."""
        from leader.data.prompts import teacher_prompts

        return teacher_prompts(ds, sample_ids, self.tokenizer, **(self.meta.get("prompt_options") or {}))[0]

    @torch.no_grad()
    def infer(
        self, prompts: list[str], batch_size: int = 16, max_length: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(probs float32 (N, M), hidden float16 (N, d_h)) in `prompts` order."""
        self.model.eval()
        ml = int(max_length or self.meta.get("max_length", 512))
        dev = next(self.model.head.parameters()).device
        M, d = self.meta["n_meds"], self.d_hidden
        probs, hid = np.zeros((len(prompts), M), np.float32), np.zeros((len(prompts), d), np.float16)
        for idx, ids, mask in encoded_batches(self.tokenizer, prompts, ml, batch_size, dev, self.model.append_eos):
            logits, h = self.model(ids, mask)
            probs[idx] = torch.sigmoid(logits.float()).cpu().numpy()
            hid[idx] = h.float().cpu().numpy().astype(np.float16)
        return probs, hid


def _saved_backbone(d: Path, meta: dict) -> BackboneSpec:
    """The backbone a checkpoint was trained on; a tiny one lives in the folder its meta names."""
    spec = resolve_backbone(meta["backbone"], meta.get("backbone_path"))
    if spec.is_tiny:
        folder = meta.get("tokenizer_dir")
        spec.path = Path(folder) if folder and Path(folder).exists() else None
        if spec.path is None:
            raise CheckpointError(f"teacher checkpoint {d}: tiny backbone folder {folder} is gone (retrain it)")
    return spec


def load_teacher(
    in_dir: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    precision: str | None = None,
) -> LoadedTeacher:
    """Registry backbone + saved adapter + saved head. `precision` (leader.precision) defaults to
    the format the teacher was trained in, where `device` has it (`for_inference`)."""
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    d = Path(in_dir)
    meta = read_json(d / META, CheckpointError, what="not a teacher checkpoint")
    for f in (ADAPTER, HEAD):
        if not (d / f).exists():
            raise CheckpointError(f"teacher checkpoint {d}: {f} missing")
    spec = _saved_backbone(d, meta)
    from transformers import AutoModel

    base = AutoModel.from_pretrained(str(spec.path), local_files_only=True, dtype=dtype or spec.dtype)
    tok = AutoTokenizer.from_pretrained(str(d / "tokenizer"), local_files_only=True)
    from leader.teacher.backbones import prepare_tokenizer

    prepare_tokenizer(tok)
    # An inference teacher never trains: LoRA merged into the base weights (in the base's dtype,
    # before a CPU bf16 teacher stores them in bf16) spares every forward the adapter's matmuls and
    # its full-size casts, scaling and add. `infer` over 217 prompts, 2 threads, AMX Xeon: MiniLM
    # bf16 80.2 -> 127.8 prompts/s, fp32 39.1 -> 49.8.
    backbone = PeftModel.from_pretrained(base, str(d / ADAPTER), is_trainable=False).merge_and_unload()
    cfg = TeacherConfig(
        meta["backbone"],
        int(meta["n_meds"]),
        int(meta.get("lora_rank", 8)),
        backbone_path=meta.get("backbone_path"),
        pooling=meta.get("pooling", "last"),
    )
    model = TeacherModel(backbone, spec, tok, cfg)
    head = load_file(str(d / HEAD))
    if head["weight"].shape != (cfg.n_meds, model.d_hidden):
        raise CheckpointError(
            f"teacher checkpoint {d}: head shape {tuple(head['weight'].shape)} != ({cfg.n_meds}, {model.d_hidden})"
        )
    norm = {k: head.pop(k) for k in NORM_KEYS if k in head}  # absent in older checkpoints: identity
    model.head.load_state_dict(head)
    if norm:
        model.set_standardization(norm["feat_mean"].numpy(), norm["feat_scale"].numpy())
    from leader.precision import for_inference, resolve

    dev = torch.device(device)
    used = resolve(precision, dev.type) if precision else for_inference(meta.get("precision"), dev.type)
    if next(base.parameters()).dtype == torch.float16:  # a large backbone's own fp16 weights: say so
        used = "fp16"
    model.set_precision(used, dev.type)
    return LoadedTeacher(model.to(dev).eval(), meta)
