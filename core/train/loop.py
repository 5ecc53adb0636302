"""The one training loop every task kind and mode goes through.

AdamW (decoupled weight decay, none on biases/LayerNorm), linear warmup then
linear decay, gradient clipping and accumulation, optional class weights,
autocast on CUDA, evaluation on the validation split with early stopping and
the best weights kept, a checkpoint per evaluation for ``--resume``.
"""

from __future__ import annotations

import functools
import math
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..config import TrainConfig
from ..metrics import compute_metrics, headline
from ..modeling import TaskModel
from ..storage import atomic_output
from .features import Features, augment_ids, collate, length_grouped_batches, pad
from .modes import can_cache_prefix, encoder_layers, forward_from_prefix, frozen_prefix
from .progress import TrainProgress

HIGHER_IS_BETTER = {"loss": False}
DEFAULT_METRIC = {"classification": "accuracy", "multilabel": "micro_f1", "pair": "spearman",
                  "embedding": "recall@1", "token": "macro_f1"}


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    best_metric: float | None = None
    best_step: int = 0
    best_epoch: float = 0.0
    steps: int = 0
    train_seconds: float = 0.0          # optimisation only (validation passes excluded)
    eval_seconds: float = 0.0
    train_examples_seen: int = 0
    stopped_early: bool = False
    autocast: str = "fp32"              # the dtype training steps really ran in
    losses: list[float] = field(default_factory=list)   # per optimizer micro-step

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when this CPU multiplies bf16 in hardware (AMX-BF16 or AVX512-BF16, Linux flags).

    There bf16 autocast makes a MiniLM training step ~1.5x faster (bench/RESULTS.md); elsewhere
    bf16 is emulated and slower than FP32, so ``precision = "auto"`` stays FP32.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, hard: torch.Tensor,
                      temperature: float, alpha: float) -> torch.Tensor:
    """``alpha`` x KL(teacher || student) at ``temperature`` (scaled by T^2, Hinton et al.) +
    ``(1 - alpha)`` x the label loss ``hard``."""
    t = float(temperature)
    kl = F.kl_div(F.log_softmax(student.float() / t, -1), F.log_softmax(teacher.float() / t, -1),
                  reduction="batchmean", log_target=True) * (t * t)
    return alpha * kl + (1.0 - alpha) * hard


def class_weight_tensor(targets: np.ndarray, n: int) -> torch.Tensor:
    counts = np.bincount(targets, minlength=n).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / (n * np.maximum(counts, 1)), 0.0)
    return torch.tensor(w, dtype=torch.float32)


def adamw(params, **kwargs) -> torch.optim.AdamW:
    """AdamW with the fused kernel (one pass over all parameters; CPU and CUDA in torch >= 2.4),
    falling back to the per-parameter loop where a device or dtype has no fused kernel."""
    try:
        return torch.optim.AdamW(params, fused=True, **kwargs)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(params, **kwargs)


def _layer_depth(name: str, n_layers: int) -> int:
    """How far below the top a parameter sits: 0 = the head and the top layer, n_layers = the embeddings."""
    m = re.search(r"\.layer\.(\d+)\.", name)
    if m:
        return n_layers - 1 - int(m.group(1))
    if "embeddings" in name:
        return n_layers
    return 0


def _param_groups(model: TaskModel, config: TrainConfig) -> list[dict]:
    """AdamW groups: head vs encoder learning rate, no weight decay on biases and LayerNorm, and
    with ``layer_lr_decay < 1`` a learning rate that shrinks by that factor per layer down the encoder
    (layer-wise decay: the lower, more general layers move least)."""
    layers = encoder_layers(model.encoder)
    n_layers = len(layers) if layers is not None else 0
    decay = config.layer_lr_decay if n_layers else 1.0
    groups: dict[tuple[bool, bool, int], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_head = name.startswith("head.")
        no_decay = p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name
        depth = 0 if is_head or decay == 1.0 else _layer_depth(name, n_layers)
        groups.setdefault((is_head, no_decay, depth), []).append(p)
    return [{"params": ps, "lr": config.head_lr if head else config.learning_rate * decay ** depth,
             "weight_decay": 0.0 if no_decay else config.weight_decay}
            for (head, no_decay, depth), ps in groups.items()]


class Trainer:
    """Trains a :class:`TaskModel` on encoded :class:`Features`; see module doc."""

    def __init__(self, model: TaskModel, config: TrainConfig, *, summary: dict, pad_id: int,
                 special_ids: set[int] = frozenset(), run_dir: Path | None = None, progress: bool = True,
                 distill: tuple[float, float] | None = None):
        self.model = model
        self.distill = distill  # (temperature, alpha): KL to the teacher's logits (soft_targets)
        self.config = config
        self.kind = model.spec.kind
        self.labels = model.spec.labels
        self.pad_id = pad_id
        self.special_ids = set(special_ids)
        self.run_dir = run_dir
        self.progress = progress
        self.device = pick_device(config.device)
        self.model.to(self.device)
        self.prefix_depth = summary["frozen_layers"] if (
            config.cache_frozen and self.kind != "embedding" and can_cache_prefix(model, summary)) else 0
        self.class_weights = None
        self._caches: dict[int, list[torch.Tensor]] = {}

    # -- batches -----------------------------------------------------------
    def _cached(self, feats: Features) -> list[torch.Tensor]:
        """Per-example hidden states after the frozen prefix, computed once."""
        key = id(feats)
        if key not in self._caches:
            rows: list[torch.Tensor | None] = [None] * len(feats)
            for batch in length_grouped_batches(feats.lengths(), self.config.eval_batch_size, None):
                b = collate(feats, batch, self.pad_id)
                tt = b.get("token_type_ids")
                hidden = frozen_prefix(self.model, b["input_ids"].to(self.device),
                                       b["attention_mask"].to(self.device), self.prefix_depth,
                                       tt.to(self.device) if tt is not None else None)
                for j, i in enumerate(batch):
                    rows[i] = hidden[j, :len(feats.input_ids[i])].detach().clone()
            self._caches[key] = rows
        return self._caches[key]

    def _batch(self, feats: Features, batch: list[int], rng: random.Random | None = None) -> dict:
        b = collate(feats, batch, self.pad_id)
        if rng is not None and self.config.augment > 0 and not self.prefix_depth \
                and self.kind in ("classification", "multilabel"):
            rows = [augment_ids(feats.input_ids[i], self.config.augment, rng, self.special_ids) for i in batch]
            b["input_ids"], b["attention_mask"] = pad(rows, self.pad_id)
        if self.prefix_depth:
            cache = self._cached(feats)
            rows = [cache[i] for i in batch]
            width = max(r.shape[0] for r in rows)
            hidden = torch.zeros(len(rows), width, rows[0].shape[-1], dtype=rows[0].dtype)
            for j, r in enumerate(rows):
                hidden[j, :r.shape[0]] = r
            b["hidden"] = hidden
        return {k: v.to(self.device) for k, v in b.items()}

    # -- model calls -------------------------------------------------------
    def _forward(self, b: dict) -> torch.Tensor:
        if "hidden" in b:
            return forward_from_prefix(self.model, b["hidden"], b["attention_mask"], self.prefix_depth)
        return self.model(b["input_ids"], b["attention_mask"], b.get("token_type_ids"))

    def _loss(self, b: dict) -> torch.Tensor:
        out = self._forward(b)
        t = b["targets"]
        if self.kind == "classification":
            w = self.class_weights.to(out.device) if self.class_weights is not None else None
            loss = F.cross_entropy(out.float(), t, weight=w, label_smoothing=self.config.label_smoothing)
            if self.distill is not None and "soft_targets" in b:
                return distillation_loss(out, b["soft_targets"], loss, *self.distill)
            return loss
        if self.kind in ("multilabel", "pair"):
            return F.binary_cross_entropy_with_logits(out.float(), t.float())
        if self.kind == "token":
            return F.cross_entropy(out.float().reshape(-1, out.shape[-1]), t.reshape(-1), ignore_index=-100)
        # embedding: multiple-negatives ranking loss with in-batch negatives
        pos = self.model(b["pair_input_ids"], b["pair_attention_mask"])
        scores = out.float() @ pos.float().T * 20.0
        return F.cross_entropy(scores, torch.arange(len(scores), device=scores.device))

    def _autocast_dtype(self, training: bool = True) -> torch.dtype | None:
        """bf16/fp16 on CUDA; bf16 on CPUs with native bf16 matmul (AMX / AVX512-BF16) for
        training steps only -- evaluation on CPU stays FP32, like the exported model.  None: FP32."""
        p = self.config.precision
        if self.device.type == "cuda" and p != "fp32":
            return torch.float16 if p == "fp16" or (p == "auto" and not torch.cuda.is_bf16_supported()) \
                else torch.bfloat16
        if self.device.type == "cpu" and training and (p == "bf16" or (p == "auto" and cpu_has_native_bf16())):
            return torch.bfloat16
        return None

    def _autocast(self, training: bool = True):
        dtype = self._autocast_dtype(training)
        if dtype is None:
            return torch.autocast("cpu", enabled=False)
        return torch.autocast(self.device.type, dtype=dtype)

    @torch.inference_mode()
    def predict(self, feats: Features, *, use_cache: bool = True) -> np.ndarray:
        """Raw outputs for every row, in input order (embedding kind: ``(queries, docs)`` stacked)."""
        self.model.eval()
        saved, self.prefix_depth = self.prefix_depth, self.prefix_depth if use_cache else 0
        outs: list = [None] * len(feats)
        pair_outs: list = [None] * len(feats)
        try:
            for batch in length_grouped_batches(feats.lengths(), self.config.eval_batch_size, None):
                b = self._batch(feats, batch)
                with self._autocast(training=False):
                    out = self._forward(b).float().cpu().numpy()
                    if self.kind == "embedding":
                        pair = self.model(b["pair_input_ids"], b["pair_attention_mask"]).float().cpu().numpy()
                for j, i in enumerate(batch):
                    outs[i] = out[j]
                    if self.kind == "embedding":
                        pair_outs[i] = pair[j]
        finally:
            self.prefix_depth = saved
        if self.kind == "token":
            width = max(o.shape[0] for o in outs)
            full = np.full((len(outs), width, outs[0].shape[-1]), -1e4, dtype=np.float32)
            for i, o in enumerate(outs):
                full[i, :o.shape[0]] = o
            return full
        if self.kind == "embedding":
            return np.stack([np.stack(outs), np.stack(pair_outs)])
        return np.stack(outs)

    def evaluate(self, feats: Features, *, use_cache: bool = True) -> dict:
        out = self.predict(feats, use_cache=use_cache)
        return compute_metrics(self.kind, *self._metric_args(out, feats), self.labels)

    def _metric_args(self, out: np.ndarray, feats: Features):
        if self.kind == "embedding":
            return out[0], out[1]
        if self.kind == "token":
            t = feats.targets
            width = out.shape[1]
            gold = np.full((len(t), width), -100, dtype=np.int64)
            for i, row in enumerate(t):
                gold[i, :len(row)] = row
            return out, gold
        return out, feats.targets

    # -- training ------------------------------------------------------------
    def fit(self, train: Features, val: Features | None) -> FitResult:
        cfg = self.config
        data_seed = cfg.seed if cfg.data_seed is None else cfg.data_seed
        rng = random.Random(data_seed)
        torch.manual_seed(data_seed)
        if cfg.class_weights and self.kind == "classification":
            self.class_weights = class_weight_tensor(train.targets, len(self.labels))
        lengths = train.lengths()
        per_epoch = math.ceil(len(train) / cfg.batch_size)
        total_micro = max(1, math.ceil(cfg.epochs * per_epoch))
        total_steps = max(1, math.ceil(total_micro / cfg.grad_accum))
        warmup = int(cfg.warmup_ratio * total_steps)
        optimizer = adamw(_param_groups(self.model, cfg))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: (s + 1) / max(1, warmup) if s < warmup
            else max(0.0, (total_steps - s) / max(1, total_steps - warmup)))
        scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda" and cfg.precision == "fp16")
        eval_every = max(1, per_epoch // cfg.evals_per_epoch)
        metric = DEFAULT_METRIC[self.kind] if cfg.metric == "auto" else cfg.metric
        higher = HIGHER_IS_BETTER.get(metric, True)
        result = FitResult()
        dtype = self._autocast_dtype()
        result.autocast = str(dtype).removeprefix("torch.") if dtype is not None else "fp32"
        best_state = None
        patience = 0
        micro = 0
        start_micro, resumed = self._maybe_resume(optimizer, schedule)
        if resumed:
            result, patience, best_state = resumed
        if self.prefix_depth:  # build caches before the clock starts counting throughput
            self._cached(train)
            if val is not None:
                self._cached(val)
        t0 = time.perf_counter()
        eval_seconds = 0.0  # excluded from training time and throughput
        bar = TrainProgress(total_micro, enabled=self.progress, unit_batch=cfg.batch_size)
        with bar:
            batches: list[list[int]] = []
            while micro < total_micro:
                if not batches:
                    batches = length_grouped_batches(lengths, cfg.batch_size, rng)
                batch = batches.pop(0)
                if micro < start_micro:  # fast-forward the data order on resume
                    micro += 1
                    continue
                self.model.train()
                b = self._batch(train, batch, rng)
                with self._autocast():
                    loss = self._loss(b) / cfg.grad_accum
                scaler.scale(loss).backward()
                micro += 1
                result.train_examples_seen += len(batch)
                if micro % cfg.grad_accum == 0 or micro == total_micro:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]],
                                             cfg.max_grad_norm)
                    scaler.step(optimizer)
                    scaler.update()
                    optimizer.zero_grad(set_to_none=True)
                    schedule.step()
                    result.steps += 1
                result.losses.append(loss.item() * cfg.grad_accum)
                bar.advance(result.losses[-1], len(batch))
                if val is not None and (micro % eval_every == 0 or micro == total_micro):
                    t_eval = time.perf_counter()
                    metrics = headline(self.evaluate(val))
                    eval_seconds += time.perf_counter() - t_eval
                    epoch = micro / per_epoch
                    if metric not in metrics:
                        from ..errors import ConfigError

                        raise ConfigError(f"metric {metric!r} is not computed for {self.kind} tasks",
                                          hint="choose one of " + ", ".join(metrics))
                    value = metrics[metric]
                    entry = {"epoch": round(epoch, 3), "step": result.steps, "train_loss": bar.loss,
                             "seconds": round(time.perf_counter() - t0 - eval_seconds, 2), **metrics}
                    result.history.append(entry)
                    bar.note(f"epoch {epoch:.2f}: {metric}={value:.4f}")
                    better = result.best_metric is None or (value > result.best_metric if higher
                                                            else value < result.best_metric)
                    if better:
                        result.best_metric, result.best_step, result.best_epoch = value, result.steps, epoch
                        best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                        patience = 0
                    else:
                        patience += 1
                    self._checkpoint(optimizer, schedule, micro, result, patience,
                                     best_state if better else None)
                    if cfg.early_stopping_patience and patience >= cfg.early_stopping_patience:
                        result.stopped_early = True
                        break
        result.train_seconds = time.perf_counter() - t0 - eval_seconds
        result.eval_seconds = eval_seconds
        if best_state is not None:
            self.model.load_state_dict(best_state)
        self.model.eval()
        return result

    # -- checkpoints -----------------------------------------------------------
    def _checkpoint(self, optimizer, schedule, micro: int, result: FitResult, patience: int,
                    new_best: dict | None) -> None:
        """Everything ``--resume`` needs; the best weights go to best.pt when they change."""
        if self.run_dir is None or not self.config.checkpoint:
            return

        def save(obj, name):
            with atomic_output(self.run_dir / name) as tmp:
                torch.save(obj, tmp)

        if new_best is not None:
            save(new_best, "best.pt")
        save({"model": self.model.state_dict(), "optimizer": optimizer.state_dict(),
              "schedule": schedule.state_dict(), "micro": micro, "patience": patience,
              "torch_rng": torch.get_rng_state(), "result": result.to_dict()}, "checkpoint.pt")

    def _maybe_resume(self, optimizer, schedule) -> tuple[int, tuple | None]:
        """Restore a checkpoint: returns (micro-steps done, (result, patience, best weights))."""
        if not self.config.resume:
            return 0, None
        from ..errors import UsageError

        path = Path(self.config.resume)
        path = path / "checkpoint.pt" if path.is_dir() else path
        if not path.is_file():
            raise UsageError(f"no checkpoint at {path}", hint="pass the folder of a run that was interrupted")
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["torch_rng"])
        best_path = path.parent / "best.pt"
        best = torch.load(best_path, map_location=self.device) if best_path.is_file() else None
        return int(state["micro"]), (FitResult(**state["result"]), int(state["patience"]), best)
