"""One teacher worker's DeepSpeed run, step by step: what every Ray Train worker runs, and what
`train_teacher_in_process` runs alone in one process.

Why this shape:
- DeepSpeed gets a torch optimizer, never a DeepSpeed "optimizer" block (that compiles a C++
  Adam op, ~65 s on CPU); on CPU it runs over gloo with DS_ACCELERATOR=cpu.
- Every worker reads the same seeded global batch order (schedule.global_batches) and takes its
  slice of each step, so W workers with batch B step as one process with batch W*B.
- A micro batch whose loss is non-finite on any rank is skipped on all of them, so the ranks'
  gradient collectives stay matched.
"""

from __future__ import annotations

import os
import time

import numpy as np

from leader.teacher import checkpoint as ckpt_io
from leader.teacher.evaluate import eval_sharded, group_metrics
from leader.teacher.inputs import encode, token_lengths
from leader.teacher.progress import Progress, rss_mb
from leader.teacher.recipe import NonFiniteLossError, build_model, final_train_loss, init_head, optimizer_groups
from leader.teacher.schedule import global_batches, lr_lambda, padding_share, total_steps


class TeacherRun:
    """State that a checkpoint must carry lives in `self.st` (step, losses, validation history,
    probe, best validation) plus `best_state`. `ctx` says where it runs (leader.teacher.context:
    Ray Train, or one local process). `config` is what train.loop_config built."""

    def __init__(self, config: dict, ctx=None):
        import torch
        import torch.distributed as dist

        from leader.console import captured_stdout
        from leader.ray_utils import select_ds_accelerator

        self.config, self.cfg, self.data = config, config["cfg"], config["data"]
        select_ds_accelerator(self.cfg.use_gpu)  # before DeepSpeed is imported in this process
        import deepspeed

        if ctx is None:
            from leader.teacher.context import RayTrainContext

            ctx = RayTrainContext()
        self.ctx, self.rank, self.world, self.dist = ctx, ctx.rank, ctx.world, dist
        self.device = ctx.device(self.cfg.use_gpu)
        torch.set_num_threads(max(1, int(config.get("threads", 1))))
        with captured_stdout():
            deepspeed.init_distributed(dist_backend="nccl" if self.cfg.use_gpu else "gloo")
        self.model = build_model(self.cfg, int(config["n_meds"]), config["backbone_path"], config["corpus"])
        self.tr = self.data["train"]
        self.T = total_steps(self.cfg, len(self.tr["prompts"]), self.world)
        init_head(self.model, self.cfg, self.tr["labels"])
        self.st: dict = {
            "step": 0,
            "losses": [],
            "history": [],
            "probe": {},
            "best_val": None,
            "best_step": None,
            "nonfinite_steps": 0,
            "nonfinite_run": 0,
        }
        self.best_state: dict | None = None
        self.probe_test_probs = None
        self.resumed_from = None

    def start(self) -> None:
        """DeepSpeed first (the model moves to the training device), then on a fresh run the probe
        stage runs there; a resumed run takes everything from its checkpoint."""
        import deepspeed
        import torch

        from leader.teacher.deepspeed_config import build_ds_config

        cfg, ckpt = self.cfg, self.ctx.latest_checkpoint()
        opt = torch.optim.AdamW(optimizer_groups(self.model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg, self.T))
        self.engine, _, _, _ = deepspeed.initialize(
            model=self.model,
            optimizer=opt,
            lr_scheduler=sched,
            config=build_ds_config(cfg, self.world, self.device.type == "cuda"),
        )
        self.engine.module.restore_fp32_buffers()
        self.device = self.engine.device
        if ckpt is None and cfg.uses_standardization:
            self._run_probe()
        if self.st["best_step"] == 0 and cfg.checkpoint == "best":
            self.best_state = ckpt_io.trainable_state(self.engine)  # the probe: LoRA at its zero init + fitted head
        if ckpt is not None:
            ckpt_io.restore_checkpoint(self, ckpt)

    def _run_probe(self) -> None:
        """LP of LP-FT on the engine's device; the fitted head is written into the engine (gathered
        under ZeRO-3) and DeepSpeed's fp32 master copies are refreshed from it."""
        from leader.teacher.probe_stage import head_of, probe_stage

        head_state = head_of(ckpt_io.trainable_state(self.engine))
        probe = probe_stage(
            self.engine.module, self.cfg, self.data, self.rank, self.world, self.dist, self.device, head_state
        )
        self.engine.module.set_standardization(probe.pop("mean"), probe.pop("std"))
        head = probe.pop("head")
        if head is not None:
            ckpt_io.load_trainable(self.engine, {f"head.{k}": v for k, v in head.items()}, self.rank)
            ckpt_io.refresh_master_weights(self.engine)
        self.probe_test_probs = probe.pop("probe_test_probs", None)
        self.st["probe"] = probe
        self.st["norm"] = {"mean": self.engine.module.feat_mean.tolist(), "std": self.engine.module.feat_scale.tolist()}
        if probe.get("probe_val_prauc") is not None and self.cfg.checkpoint == "best":  # the probe can be kept
            self.st["best_val"], self.st["best_step"] = probe["probe_val_prauc"], 0

    def _predict(self, prompts: list[str]) -> np.ndarray:
        """Probabilities of `prompts`, sharded over the ranks (collective)."""
        cfg = self.cfg
        return eval_sharded(self.engine, prompts, cfg.max_length, cfg.eval_batch_size, self.rank, self.world, self.dist)

    def validate(self, epoch: int) -> float:
        from leader.metrics import mean_metrics

        va, cfg = self.data["val"], self.cfg
        p = self._predict(va["prompts"])
        v = mean_metrics(np.asarray(va["labels"]), p)["prauc"] if len(p) else float("nan")
        self.st["history"].append({"epoch": epoch, "step": self.st["step"], "val_prauc": v})
        if len(p) and ckpt_io.keeps(cfg.checkpoint, self.st["best_val"], v):
            self.st["best_val"], self.st["best_step"] = v, self.st["step"]  # the kept state's step
            if cfg.checkpoint == "best":  # 'last' keeps the engine's own final state: no copy
                self.best_state = ckpt_io.trainable_state(self.engine)
        return v

    def _all_finite(self, loss) -> bool:
        """Every rank's loss is finite (a MIN all-reduce on the backend's device): the skip decision
        must be the same everywhere, or the ranks' gradient collectives would no longer match."""
        import torch

        ok = torch.isfinite(loss.detach()).to(torch.float32).reshape(1)
        if self.world > 1:
            self.dist.all_reduce(ok, op=self.dist.ReduceOp.MIN)
        return bool(ok.item() > 0)

    def train_step(self, gb: np.ndarray, y) -> float:
        """One optimizer step over the global batch `gb` (this rank's micro batches). A micro batch
        whose loss is non-finite on any rank is skipped on all of them (no backward, no step) and
        counted; NaN is recorded when every micro batch of the step was skipped."""
        import torch

        cfg, tot, n_ok = self.cfg, 0.0, 0
        for m in range(cfg.grad_accum):
            lo = (m * self.world + self.rank) * cfg.batch_size
            idx = gb[lo : lo + cfg.batch_size]
            ps = [self.tr["prompts"][i] for i in idx]
            ii, mm = encode(self.model.tokenizer, ps, cfg.max_length, self.device, self.model.append_eos)
            logits, _ = self.engine(ii, mm)
            loss = self.model.loss(logits, y[idx].to(logits.device, non_blocking=True))
            if not self._all_finite(loss):
                continue
            self.engine.backward(loss)
            self.engine.step()
            tot, n_ok = tot + float(loss.detach()), n_ok + 1
        self._count_nonfinite(n_ok < cfg.grad_accum)
        lt = torch.tensor([tot / max(n_ok, 1)], dtype=torch.float64, device=self.device)
        self.dist.all_reduce(lt)  # on the backend's device: NCCL has no CPU tensors
        return float(lt.item()) / self.world if n_ok else float("nan")

    def _count_nonfinite(self, skipped: bool) -> None:
        st = self.st
        st["nonfinite_steps"] += int(skipped)
        st["nonfinite_run"] = st["nonfinite_run"] + 1 if skipped else 0
        if st["nonfinite_run"] >= self.cfg.max_nonfinite_steps:
            raise NonFiniteLossError(
                f"teacher {self.cfg.backbone}: {st['nonfinite_run']} consecutive optimizer steps had a NaN/inf loss "
                f"(step {st['step'] + 1}, {st['nonfinite_steps']} in all): fp16 overflow in the forward (known for "
                f"Qwen on V100) or a broken batch. Try fp16: false (fp32), a lower lr, or check the prompts."
            )

    def train(self) -> dict:
        """All steps; returns throughput figures. Checkpoints at epoch ends / every N steps."""
        import torch

        cfg, st, n = self.cfg, self.st, len(self.tr["prompts"])
        G = cfg.batch_size * cfg.grad_accum * self.world
        lens = token_lengths(self.model.tokenizer, self.tr["prompts"], cfg.max_length, self.model.append_eos)
        run: list[np.ndarray] = []  # the global batches this run computed (padding share)
        y = torch.from_numpy(np.array(self.tr["labels"], dtype=np.float32))  # writable copy
        spe = n // G
        t_train, n_timed, peak = 0.0, 0, rss_mb()
        progress, last_val = Progress(self.T, cfg.progress_every_s, self.rank), st["best_val"]
        self.engine.train()
        while st["step"] < self.T:
            epoch = st["step"] // spe
            batches = global_batches(n, G, cfg.seed, epoch, lens if cfg.length_buckets else None)
            for s in range(st["step"] % spe, spe):
                if st["step"] >= self.T:
                    break
                self._maybe_fail()
                t0 = time.perf_counter()
                # Sorting the global batch by length groups similar prompts into each micro batch:
                # less padding, and the same samples (hence the same mean gradient) per step.
                run.append(batches[s][np.argsort(lens[batches[s]], kind="stable")])
                st["losses"].append(self.train_step(run[-1], y))
                st["step"] += 1
                if st["step"] > 1:  # the first step pays warm-up costs
                    t_train += time.perf_counter() - t0
                    n_timed += 1
                peak = max(peak, rss_mb())
                end_epoch = s == spe - 1 or st["step"] >= self.T
                metrics = {"step": st["step"], "epoch": epoch, "loss": st["losses"][-1]}
                if end_epoch or (cfg.eval_every and st["step"] % cfg.eval_every == 0):
                    metrics["val_prauc"] = last_val = self.validate(epoch)
                progress(st["step"], st["losses"][-1], G, last_val, force=end_epoch)
                if end_epoch or (cfg.checkpoint_every and st["step"] % cfg.checkpoint_every == 0):
                    ckpt_io.write_checkpoint(self, metrics, f"checkpoint_{st['step']:06d}")
        per_s = (n_timed / t_train) if t_train > 0 else float("nan")
        return {
            "steps_per_s_per_worker": per_s,
            "samples_per_s_per_worker": per_s * cfg.batch_size * cfg.grad_accum,
            "rss_mb_peak_worker": peak,
            "padding_share": padding_share(run, lens, cfg.batch_size),
        }

    def _maybe_fail(self) -> None:
        """Test-only fault injection ($LEADER_TEST_FAIL_AT_STEP, read by the driver)."""
        at = self.config.get("fail_at_step")
        if at is not None and self.st["step"] == at and self.resumed_from is None and self.rank == self.world - 1:
            # Ray Train's controller polls worker reports every ~2 s: dying right after the
            # last report would lose that checkpoint (restart from scratch, then crash again).
            time.sleep(5)
            os._exit(1)  # simulated worker crash (first attempt only)

    def finish(self, speed: dict) -> None:
        """The kept state (`checkpoint`: best validation, probe included, or the last) -> test
        metrics by group -> save."""
        import tempfile
        from pathlib import Path

        cfg, st, te = self.cfg, self.st, self.data["test"]
        if self.best_state is not None and st["best_step"] != st["step"]:
            ckpt_io.load_trainable(self.engine, self.best_state, self.rank)
        final = self._final_metrics(speed)
        if cfg.eval_test and te["prompts"]:
            p = self._predict(te["prompts"])
            thr = 0.5 if cfg.threshold is None else cfg.threshold
            final.update(group_metrics(np.asarray(te["labels"]), p, te["groups"], "test", thr))
        if st["history"]:
            final["val_prauc"] = st["history"][-1]["val_prauc"]
        state = ckpt_io.trainable_state(self.engine)
        with tempfile.TemporaryDirectory() as tmp:
            if self.rank == 0:
                ckpt_io.save_final(self, Path(tmp) / "teacher", final, state)
            self.ctx.report(final, tmp if self.rank == 0 else None, "final")

    def _final_metrics(self, speed: dict) -> dict:
        from leader.teacher.probe import prior_bce

        st = self.st
        return {
            "step": st["step"],
            "losses": st["losses"],
            "history": st["history"],
            "resumed_from": self.resumed_from,
            **speed,
            "world_size": self.world,
            "zero_stage": self.engine.zero_optimization_stage(),
            "precision": self.model.precision,
            "prior_bce": prior_bce(np.asarray(self.tr["labels"])),
            "final_train_loss": final_train_loss(st["losses"]),
            "best_val_prauc": st["best_val"],
            "best_step": st["best_step"],
            "nonfinite_steps": st.get("nonfinite_steps", 0),
            "fp16_skipped_steps": int(getattr(self.engine, "skipped_steps", 0) or 0),
            **{k: v for k, v in st["probe"].items() if k != "probe_history"},
        }


def train_loop(config: dict, ctx=None) -> dict:
    """What each Ray Train worker runs (`ctx` None), or one local process (a LocalContext)."""
    run = TeacherRun(config, ctx)
    run.start()
    run.finish(run.train())
    return run.st
