"""The deterministic trainer: `run_training(config, data_dir, out_dir, device)` → summary.

Shaped like torchvision's references/classification/train.py: load data, build model, then per epoch
`train_one_epoch` and `evaluate`, keeping best and last checkpoints. Every source of randomness is
derived from config.seed (see seeding.SEED_RULES) and every numerics setting is applied and recorded.
(Not to be confused with reproexec/engine.py, the host's container engine.)
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from reproexec.config import Config
from reproexec.errors import RunError
from reproexec.runtime import artifacts as art
from reproexec.runtime.datasets import (
    DatasetBundle,
    EpochSampler,
    SeededImageDataset,
    collate_passthrough,
    load_dataset,
    seed_worker,
)
from reproexec.runtime.environment import capture_environment
from reproexec.runtime.model import build_model, state_dict_sha256
from reproexec.runtime.seeding import (
    SEED_RULES,
    derive_seed,
    determinism,
    nondeterministic_op_error,
    seed_everything,
)

Emit = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Plan:
    """How many steps and epochs this run takes, decided before the first step."""

    steps_per_epoch: int
    total_steps: int
    epochs: int
    eval_every: int
    drop_last: bool


def make_plan(config: Config, n_train: int, *, smoke: bool) -> Plan:
    t = config.train
    bs = min(t.batch_size, n_train)
    # A trailing batch of one sample breaks BatchNorm in train mode (1×1 maps at the end of most
    # nets); drop exactly that case, nothing else.
    drop_last = n_train % bs == 1 and n_train > 1
    spe = n_train // bs if drop_last else math.ceil(n_train / bs)
    if smoke:
        total = config.smoke.steps
        epochs = math.ceil(total / spe)
        return Plan(spe, total, epochs, epochs, drop_last)  # evaluate once, at the end
    total = t.epochs * spe if t.max_steps is None else min(t.max_steps, t.epochs * spe)
    return Plan(spe, total, math.ceil(total / spe), t.eval_every, drop_last)


class LrFactor:
    """Per-step LR multiplier: linear warmup, then cosine to 0 or step decay by epoch (pure function of step)."""

    def __init__(self, config: Config, plan: Plan):
        s = config.train.scheduler
        self.name, self.gamma, self.step_size = s.name, s.gamma, s.step_size
        self.spe = plan.steps_per_epoch
        self.warmup = min(s.warmup_epochs * plan.steps_per_epoch, max(plan.total_steps - 1, 0))
        self.total = plan.total_steps

    def __call__(self, step: int) -> float:  # step = optimizer steps taken so far
        if step < self.warmup:
            return (step + 1) / self.warmup
        t = step - self.warmup
        if self.name == "cosine":
            span = max(self.total - self.warmup, 1)
            return 0.5 * (1.0 + math.cos(math.pi * min(t, span) / span))
        if self.name == "step":
            return self.gamma ** ((t // self.spe) // self.step_size)
        return 1.0


def make_optimizer(config: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    t = config.train
    if t.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)


class TrainLog:
    """Plain-text train.log (no timestamps: two identical runs write identical logs)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "w", encoding="utf-8")  # noqa: SIM115  (open for the whole run; close() ends it)

    def __call__(self, text: str) -> None:
        self._f.write(text + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def _noop(_: dict[str, Any]) -> None:
    pass


# ----------------------------------------------------------------------------- what the loop works on


@dataclass(frozen=True)
class RunSpec:
    """What this run is, settled before the first step; read by the loop and the output writer."""

    config: Config
    out: Path
    device: str
    smoke: bool
    det: dict[str, Any]
    seeds: dict[str, int]
    bundle: DatasetBundle
    plan: Plan
    emit: Emit
    t0: float

    def elapsed_s(self) -> float:
        return round(time.perf_counter() - self.t0, 3)


class Parts(NamedTuple):
    """What training updates, unpacked where it is used."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    criterion: torch.nn.Module


class Loaders(NamedTuple):
    """The train loader with the two handles reseeded per epoch, and the in-order val loader."""

    train: torch.utils.data.DataLoader
    sampler: EpochSampler
    generator: torch.Generator
    val: torch.utils.data.DataLoader
    val_ds: SeededImageDataset  # also read directly, for the prediction images


@dataclass
class LoopState:
    """What the loop carries across steps and epochs (torchvision's train.py keeps it in locals)."""

    epoch: int = 0  # the one running, from 1
    step: int = 0  # optimizer steps taken
    images_seen: int = 0
    losses: list[float] = field(default_factory=list)  # every step's loss, in order
    best: dict[str, Any] | None = None
    best_state: dict[str, Any] | None = None
    final_eval: dict[str, Any] | None = None
    train_s: float = 0.0
    eval_s: float = 0.0


class StepLog:
    """Step losses stay on the device until a log point (no host sync per step on CUDA), then go
    to steps.jsonl, LoopState.losses and one "step" event; also sums the epoch's train loss."""

    def __init__(self, run: RunSpec, state: LoopState, stream: art.JsonlStream):
        self.run, self.state, self.stream = run, state, stream
        self.pending: list[tuple[int, float, int, torch.Tensor]] = []  # (step, lr, batch size, loss on device)
        self.loss_weighted, self.n_epoch = 0.0, 0

    def start_epoch(self) -> None:
        self.loss_weighted, self.n_epoch = 0.0, 0

    def add(self, step: int, lr: float, batch_size: int, loss: torch.Tensor) -> None:
        self.pending.append((step, lr, batch_size, loss))

    def flush(self) -> None:
        if not self.pending:
            return
        plan, epoch = self.run.plan, self.state.epoch
        values = torch.stack([p[3] for p in self.pending]).tolist()
        for (s, lr, bs, _), v in zip(self.pending, values, strict=True):
            if not math.isfinite(v):
                raise RunError(
                    f"training loss became {v} at step {s} (epoch {epoch})",
                    "lower train.lr, add warmup (train.scheduler.warmup_epochs), or check the data",
                )
            self.state.losses.append(v)
            self.loss_weighted += v * bs
            self.n_epoch += bs
            self.stream.write({"step": s, "epoch": epoch, "loss": v, "lr": lr})
        last = self.pending[-1]
        self.run.emit(
            {
                "event": "step",
                "step": last[0],
                "total_steps": plan.total_steps,
                "epoch": epoch,
                "epochs": plan.epochs,
                "loss": values[-1],
                "lr": last[1],
                "elapsed_s": self.run.elapsed_s(),
            }
        )
        self.pending.clear()
        self.stream.flush()

    def train_loss(self) -> float:
        """The epoch's mean loss, weighted by batch size."""
        return self.loss_weighted / max(self.n_epoch, 1)


# ----------------------------------------------------------------------------- the run


def run_training(
    config: Config,
    data_dir: Path,
    out_dir: Path,
    device: str = "cpu",
    *,
    smoke: bool = False,
    weights_path: Path | None = None,
    emit: Emit | None = None,
) -> dict[str, Any]:
    """Train per `config` on the snapshot at `data_dir`, write the run folder `out_dir`, return the summary.

    `smoke`: config.smoke.steps steps on a seeded config.smoke.subset of the training images,
    evaluated once at the end. `emit` receives the progress events (main() prints them as JSON
    lines). Raises ReproexecError subclasses for everything a user can fix.
    """
    emit = emit or _noop
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("summary.json", "error.json"):
        (out / stale).unlink(missing_ok=True)  # a reused folder must not look finished
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RunError(f"device {device!r} requested but CUDA is not available", "use --device cpu or a GPU machine")
    log = TrainLog(out / "train.log")
    t0 = time.perf_counter()
    try:
        with determinism(config, device) as det:
            run = _prepare(config, Path(data_dir), out, device, smoke, det, emit, t0, log)
            return _run(run, weights_path, log)
    except RuntimeError as e:
        translated = nondeterministic_op_error(e, config.model.arch, device)
        err = translated or e
        _record_failure(out, log, err)
        if translated is not None:
            raise translated from None
        raise
    except BaseException as e:
        _record_failure(out, log, e)
        raise
    finally:
        log.close()


def _record_failure(out: Path, log: TrainLog, e: BaseException) -> None:
    msg = getattr(e, "message", None) or str(e) or type(e).__name__
    log(f"FAILED: {type(e).__name__}: {msg}")
    art.write_json(
        out / "error.json",
        {"status": "failed", "error": type(e).__name__, "message": msg, "hint": getattr(e, "hint", None)},
    )


def _prepare(
    config: Config,
    data_dir: Path,
    out: Path,
    device: str,
    smoke: bool,
    det: dict[str, Any],
    emit: Emit,
    t0: float,
    log: TrainLog,
) -> RunSpec:
    """Seed, read the data, plan; write the files that describe the run before it starts."""
    seeds = seed_everything(config.seed)
    art.write_json(out / "config.json", config.resolved())
    bundle = load_dataset(config, data_dir, subset=config.smoke.subset if smoke else None)
    art.write_json(
        out / "classes.json", {"classes": bundle.classes, "index": {c: i for i, c in enumerate(bundle.classes)}}
    )
    plan = make_plan(config, len(bundle.train.labels), smoke=smoke)
    art.write_json(
        out / "determinism.json",
        {**det, "seeds": seeds, "seed_rules": SEED_RULES, "smoke": smoke, "plan": plan.__dict__},
    )
    art.write_json(out / "environment.json", capture_environment())
    log(
        f"run {config.name}: arch={config.model.arch} device={device} mode={det['mode']} seed={config.seed} "
        f"threads={det['intra_op_threads']} cpu_capability={det['cpu_capability_actual']}"
    )
    log(f"data: {bundle.info}")
    log(f"plan: {plan}")
    return RunSpec(config, out, device, smoke, det, seeds, bundle, plan, emit, t0)


def _build_parts(run: RunSpec, dev: torch.device, weights_path: Path | None, log: TrainLog) -> Parts:
    config = run.config
    torch.manual_seed(run.seeds["torch"])  # model init draws from the global generator: reseed right before
    model = build_model(config, weights_path).to(dev)
    if config.model.weights is not None:
        log(f"weights: loaded pinned {config.model.weights.path} (sha256 {config.model.weights.sha256})")
    optimizer = make_optimizer(config, model)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, LrFactor(config, run.plan))
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=config.train.label_smoothing)
    return Parts(model, optimizer, scheduler, criterion)


def _build_loaders(run: RunSpec, dev: torch.device) -> Loaders:
    config = run.config
    train_ds = SeededImageDataset(run.bundle.train, config, train=True)
    val_ds = SeededImageDataset(run.bundle.val, config, train=False)
    sampler = EpochSampler(len(train_ds), config.seed)
    loader_gen = torch.Generator()
    nw = config.train.num_workers
    train = torch.utils.data.DataLoader(
        train_ds,
        batch_size=min(config.train.batch_size, len(train_ds)),
        sampler=sampler,
        drop_last=run.plan.drop_last,
        num_workers=nw,
        collate_fn=collate_passthrough,
        worker_init_fn=seed_worker if nw else None,
        generator=loader_gen,
        pin_memory=dev.type == "cuda",
        persistent_workers=False,
    )
    return Loaders(train, sampler, loader_gen, make_eval_loader(val_ds, config.train.batch_size), val_ds)


def make_eval_loader(ds: SeededImageDataset, batch_size: int) -> torch.utils.data.DataLoader:
    """The val set in index order, in the main process. A loader of its own generator: iterating
    draws a base seed, which must not come from (and advance) the global one training uses."""
    return torch.utils.data.DataLoader(
        ds,
        batch_size=batch_size,
        sampler=[(None, i) for i in range(len(ds))],
        num_workers=0,
        collate_fn=collate_passthrough,
        generator=torch.Generator(),
    )


def _run(run: RunSpec, weights_path: Path | None, log: TrainLog) -> dict[str, Any]:
    config, plan, out = run.config, run.plan, run.out
    dev = torch.device(run.device)
    parts = _build_parts(run, dev, weights_path, log)
    loaders = _build_loaders(run, dev)
    n_train, n_val = len(run.bundle.train.labels), len(loaders.val_ds)
    run.emit(
        {
            "event": "start",
            "name": config.name,
            "arch": config.model.arch,
            "device": run.device,
            "mode": run.det["mode"],
            "smoke": run.smoke,
            "total_steps": plan.total_steps,
            "epochs": plan.epochs,
            "steps_per_epoch": plan.steps_per_epoch,
            "train_images": n_train,
            "val_images": n_val,
        }
    )

    state = LoopState()
    steps_out = art.JsonlStream(out / "metrics" / "steps.jsonl")
    epochs_out = art.JsonlStream(out / "metrics" / "epochs.jsonl")
    steps = StepLog(run, state, steps_out)
    try:
        for epoch in range(1, plan.epochs + 1):
            t_ep = time.perf_counter()
            state.epoch = epoch
            loaders.sampler.set_epoch(epoch)
            loaders.generator.manual_seed(derive_seed(config.seed, "loader", epoch))
            train_loss = train_one_epoch(parts, loaders.train, dev, run, state, steps)
            state.train_s += time.perf_counter() - t_ep
            row: dict[str, Any] = {"epoch": epoch, "step": state.step, "train_loss": train_loss}
            is_best = False
            if epoch % plan.eval_every == 0 or epoch == plan.epochs:
                is_best = _evaluate_epoch(run, parts, loaders.val, dev, state, row)
            epochs_out.write(row)
            epochs_out.flush()
            log(
                f"epoch {epoch}/{plan.epochs} step {state.step}: "
                + " ".join(f"{k}={v:.6f}" for k, v in row.items() if isinstance(v, float))
                + (" (best)" if is_best else "")
            )
            run.emit(
                {
                    "event": "epoch",
                    **{k: v for k, v in row.items() if k != "per_class_acc"},
                    "epochs": plan.epochs,
                    "total_steps": plan.total_steps,
                    "best": is_best,
                    "elapsed_s": run.elapsed_s(),
                }
            )
    finally:
        steps_out.close()
        epochs_out.close()

    if state.final_eval is None or state.best is None or state.best_state is None:
        raise RunError(
            f"no finite {config.train.selection_metric} was measured, so there is no best checkpoint",
            "check the validation data and the loss (NaN/inf metrics are never selected)",
        )
    steps_out.finish()
    epochs_out.finish()
    t_art = time.perf_counter()
    summary = _write_outputs(run, parts, state, loaders.val_ds, steps_out.rows, epochs_out.rows)
    art_s = time.perf_counter() - t_art
    wall = time.perf_counter() - run.t0
    timing = {
        "wall_s": wall,
        "train_s": state.train_s,
        "eval_s": state.eval_s,
        "artifacts_s": art_s,
        "setup_s": wall - state.train_s - state.eval_s - art_s,
        "images_trained": state.images_seen,
        "train_images_per_s": state.images_seen / state.train_s if state.train_s else None,
    }
    art.write_json(out / "timing.json", timing)  # not in summary.json: wall time is not reproducible
    final = state.final_eval
    log(f"done: steps={state.step} final val_acc={final['val_acc']:.6f} weights_sha256={summary['weights_sha256']}")
    # summary.json is written last: its presence means the run folder is complete.
    art.write_json(out / "summary.json", summary)
    run.emit(
        {
            "event": "done",
            "steps": state.step,
            "total_steps": plan.total_steps,
            "epochs": plan.epochs,
            "val_acc": final["val_acc"],
            "val_loss": final["val_loss"],
            "best": state.best,
            "weights_sha256": summary["weights_sha256"],
            "loss_sum_first5": summary["loss_sum_first5"],
            "elapsed_s": round(wall, 3),
        }
    )
    return {**summary, "timing": timing}


def train_one_epoch(
    parts: Parts, loader: torch.utils.data.DataLoader, dev: torch.device, run: RunSpec, state: LoopState, steps: StepLog
) -> float:
    """Epoch state.epoch: one pass over `loader`, stopping at plan.total_steps; returns its mean train loss."""
    model, optimizer, scheduler, criterion = parts
    model.train()
    steps.start_epoch()
    for x, y, _idx in loader:
        if state.step >= run.plan.total_steps:
            break
        x = x.to(dev, non_blocking=True)
        y = y.to(dev, non_blocking=True)
        lr = optimizer.param_groups[0]["lr"]
        loss = criterion(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        state.step += 1
        state.images_seen += len(y)
        steps.add(state.step, lr, len(y), loss.detach())
        if state.step % run.config.train.log_every == 0:
            steps.flush()
    steps.flush()
    return steps.train_loss()


def _evaluate_epoch(
    run: RunSpec,
    parts: Parts,
    loader: torch.utils.data.DataLoader,
    dev: torch.device,
    state: LoopState,
    row: dict[str, Any],
) -> bool:
    """Evaluate, add the val metrics to the epoch's `row`, keep the best checkpoint; True if this is it."""
    config, classes, epoch = run.config, run.bundle.classes, state.epoch
    last_epoch = epoch == run.plan.epochs
    t_ev = time.perf_counter()
    keep = _prediction_indices(config, len(run.bundle.val.labels)) if last_epoch else ()
    ev = evaluate(parts.model, parts.criterion, loader, dev, len(classes), keep=keep)
    state.eval_s += time.perf_counter() - t_ev
    row.update(
        val_loss=ev["val_loss"],
        val_acc=ev["val_acc"],
        per_class_acc=dict(zip(classes, ev["per_class_acc"], strict=True)),
    )
    if last_epoch:
        state.final_eval = ev
    value, best = ev[config.train.selection_metric], state.best
    maximize = config.train.selection_metric == "val_acc"
    if not (math.isfinite(value) and (best is None or (value > best["value"] if maximize else value < best["value"]))):
        return False
    state.best = {"metric": config.train.selection_metric, "value": value, "epoch": epoch, "step": state.step}
    state.best_state = _snapshot(parts.model, parts.optimizer, parts.scheduler)
    return True


def _snapshot(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any) -> dict[str, Any]:
    return {
        "model": {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()},
        "optimizer": _to_cpu(copy.deepcopy(optimizer.state_dict())),
        "scheduler": copy.deepcopy(scheduler.state_dict()),
    }


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu")
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj


def _prediction_indices(config: Config, n_val: int) -> list[int]:
    n = min(config.output.sample_predictions, n_val)
    perm = torch.randperm(n_val, generator=torch.Generator().manual_seed(derive_seed(config.seed, "predictions")))
    return sorted(perm[:n].tolist())


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    criterion: torch.nn.Module,
    loader: torch.utils.data.DataLoader,
    dev: torch.device,
    n_classes: int,
    keep: Collection[int] = (),
) -> dict[str, Any]:
    """Val loss (criterion, per-sample mean), accuracy, per-class accuracy, confusion matrix, and the
    predictions for the sample indices in `keep`."""
    was_training = model.training
    model.eval()
    keep = set(keep)
    loss_sum = 0.0
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    kept: list[dict[str, Any]] = []
    for x, y, idx in loader:
        logits = model(x.to(dev, non_blocking=True))
        loss_sum += float(criterion(logits, y.to(dev)).item()) * len(y)
        probs = torch.softmax(logits.float(), dim=1).cpu()
        conf, pred = probs.max(dim=1)
        np.add.at(confusion, (y.numpy(), pred.numpy()), 1)
        for j, i in enumerate(idx.tolist()):
            if i in keep:
                kept.append({"index": i, "true": int(y[j]), "predicted": int(pred[j]), "confidence": float(conf[j])})
    model.train(was_training)
    rows = confusion.sum(axis=1)
    n = int(rows.sum())
    return {
        "val_loss": loss_sum / max(n, 1),
        "val_acc": float(np.trace(confusion)) / max(n, 1),
        "per_class_acc": [float(confusion[c, c] / rows[c]) if rows[c] else None for c in range(n_classes)],
        "confusion": confusion.tolist(),
        "kept": kept,
    }


# ----------------------------------------------------------------------------- outputs


def _write_outputs(
    run: RunSpec,
    parts: Parts,
    state: LoopState,
    val_ds: SeededImageDataset,
    steps: list[dict[str, Any]],
    epochs: list[dict[str, Any]],
) -> dict[str, Any]:
    """Checkpoints, confusion matrix, predictions and curves; returns summary.json's content."""
    config, bundle, out = run.config, run.bundle, run.out
    best, best_state, final_eval = state.best, state.best_state, state.final_eval
    assert best is not None and best_state is not None and final_eval is not None
    last_state = _snapshot(parts.model, parts.optimizer, parts.scheduler)
    weights_sha = state_dict_sha256(last_state["model"])
    common = {"config": config.resolved(), "classes": bundle.classes, "selection_metric": best["metric"]}
    ckpts = {}
    for name, ck_state, epoch, st, value in (
        ("best.pt", best_state, best["epoch"], best["step"], best["value"]),
        ("last.pt", last_state, run.plan.epochs, state.step, epochs[-1].get(best["metric"])),
    ):
        w_sha = weights_sha if ck_state is last_state else state_dict_sha256(ck_state["model"])
        sha = art.save_checkpoint(
            out / "checkpoints" / name,
            {
                **ck_state,
                **common,
                "epoch": epoch,
                "step": st,
                "selection_value": value,
                "weights_sha256": w_sha,
            },
        )
        ckpts[name] = {
            "sha256": sha,
            "epoch": epoch,
            "step": st,
            "selection_metric": best["metric"],
            "selection_value": value,
            "weights_sha256": w_sha,
        }
    art.write_json(out / "checkpoints" / "checkpoints.json", ckpts)

    art.write_confusion(
        out / "confusion_matrix.csv", out / "confusion_matrix.png", final_eval["confusion"], bundle.classes
    )
    kept = final_eval["kept"]
    pred_rows = [
        {
            "index": r["index"],
            "id": bundle.val.images.ids[r["index"]],
            "true": bundle.classes[r["true"]],
            "predicted": bundle.classes[r["predicted"]],
            "confidence": r["confidence"],
        }
        for r in kept
    ]
    art.write_json(out / "predictions.json", pred_rows)
    if pred_rows:
        images = [val_ds.image(r["index"]).permute(1, 2, 0).numpy() for r in kept]
        art.plot_predictions(out / "predictions.png", images, pred_rows)
    art.plot_curves(out / "curves.png", steps, epochs)

    losses = state.losses
    k = max(1, min(5, len(losses) // 2))
    last_row = epochs[-1]
    return {
        "status": "completed",
        "name": config.name,
        "arch": config.model.arch,
        "device": run.device,
        "mode": run.det["mode"],
        "seed": config.seed,
        "smoke": run.smoke,
        "steps": state.step,
        "epochs": run.plan.epochs,
        "images_seen": state.images_seen,
        "final": {
            "epoch": last_row["epoch"],
            "train_loss": last_row["train_loss"],
            "val_loss": final_eval["val_loss"],
            "val_acc": final_eval["val_acc"],
            "per_class_acc": dict(zip(bundle.classes, final_eval["per_class_acc"], strict=True)),
        },
        "best": best,
        "weights_sha256": weights_sha,
        "loss_sum_first5": sum(losses[:5]),
        "loss_first_mean": sum(losses[:k]) / k,
        "loss_last_mean": sum(losses[-k:]) / k,
        "loss_window": k,
        "checkpoints": {n: c["sha256"] for n, c in ckpts.items()},
    }
