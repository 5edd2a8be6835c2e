"""The deterministic trainer: `run_training(config, data_dir, out_dir, device)` → summary.

Shape after torchvision's references/classification/train.py: load data, build model, train one
epoch at a time, evaluate, keep best and last checkpoints. Every source of randomness is derived
from config.seed (see seeding.SEED_RULES) and every numerics setting is applied and recorded.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reproexec.config import Config
from reproexec.errors import RunError
from reproexec.runtime import artifacts as art
from reproexec.runtime.data import (
    DatasetBundle,
    EpochSampler,
    SeededImageDataset,
    collate_passthrough,
    load_dataset,
    seed_worker,
)
from reproexec.runtime.environment import capture_environment
from reproexec.runtime.model import build_model, state_dict_sha256
from reproexec.runtime.seeding import SEED_RULES, derive_seed, determinism, nondeterministic_op_error, seed_everything

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
        self._f = open(path, "w", encoding="utf-8")

    def __call__(self, text: str) -> None:
        self._f.write(text + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def _noop(_: dict[str, Any]) -> None:
    pass


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
            return _run(config, Path(data_dir), out, device, smoke, weights_path, emit, log, det, t0)
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
    art.write_json(out / "error.json", {"status": "failed", "error": type(e).__name__, "message": msg,
                                       "hint": getattr(e, "hint", None)})


def _run(config: Config, data_dir: Path, out: Path, device: str, smoke: bool, weights_path: Path | None,
         emit: Emit, log: TrainLog, det: dict[str, Any], t0: float) -> dict[str, Any]:
    dev = torch.device(device)
    seeds = seed_everything(config.seed)
    art.write_json(out / "config.json", config.resolved())
    bundle = load_dataset(config, data_dir, subset=config.smoke.subset if smoke else None)
    art.write_json(out / "classes.json", {"classes": bundle.classes,
                                          "index": {c: i for i, c in enumerate(bundle.classes)}})
    plan = make_plan(config, len(bundle.train.labels), smoke=smoke)
    art.write_json(out / "determinism.json", {**det, "seeds": seeds, "seed_rules": SEED_RULES,
                                              "smoke": smoke, "plan": plan.__dict__})
    art.write_json(out / "environment.json", capture_environment())
    log(f"run {config.name}: arch={config.model.arch} device={device} mode={det['mode']} seed={config.seed} "
        f"threads={det['intra_op_threads']} cpu_capability={det['cpu_capability_actual']}")
    log(f"data: {bundle.info}")
    log(f"plan: {plan}")

    torch.manual_seed(seeds["torch"])  # model init draws from the global generator: reseed right before
    model = build_model(config, weights_path).to(dev)
    if config.model.weights is not None:
        log(f"weights: loaded pinned {config.model.weights.path} (sha256 {config.model.weights.sha256})")
    optimizer = make_optimizer(config, model)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, LrFactor(config, plan))
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=config.train.label_smoothing)

    train_ds = SeededImageDataset(bundle.train, config, train=True)
    val_ds = SeededImageDataset(bundle.val, config, train=False)
    sampler = EpochSampler(len(train_ds), config.seed)
    loader_gen = torch.Generator()
    nw = config.train.num_workers
    loader = torch.utils.data.DataLoader(
        train_ds, batch_size=min(config.train.batch_size, len(train_ds)), sampler=sampler,
        drop_last=plan.drop_last, num_workers=nw, collate_fn=collate_passthrough,
        worker_init_fn=seed_worker if nw else None, generator=loader_gen,
        pin_memory=dev.type == "cuda", persistent_workers=False,
    )
    emit({"event": "start", "name": config.name, "arch": config.model.arch, "device": device,
          "mode": det["mode"], "smoke": smoke, "total_steps": plan.total_steps, "epochs": plan.epochs,
          "steps_per_epoch": plan.steps_per_epoch, "train_images": len(train_ds), "val_images": len(val_ds)})

    steps_out = art.JsonlStream(out / "metrics" / "steps.jsonl")
    epochs_out = art.JsonlStream(out / "metrics" / "epochs.jsonl")
    step = 0
    all_losses: list[float] = []
    best: dict[str, Any] | None = None
    best_state: dict[str, Any] | None = None
    final_eval: dict[str, Any] | None = None
    train_s = eval_s = 0.0
    images_seen = 0
    maximize = config.train.selection_metric == "val_acc"
    try:
        for epoch in range(1, plan.epochs + 1):
            t_ep = time.perf_counter()
            sampler.set_epoch(epoch)
            loader_gen.manual_seed(derive_seed(config.seed, "loader", epoch))
            model.train()
            pending: list[tuple[int, float, int, torch.Tensor]] = []  # (step, lr, batch size, loss on device)
            loss_weighted, n_epoch = 0.0, 0

            def flush() -> None:
                # Losses stay on the device until a log point: no host sync per step on CUDA.
                nonlocal loss_weighted, n_epoch
                if not pending:
                    return
                values = torch.stack([p[3] for p in pending]).tolist()
                for (s, lr, bs, _), v in zip(pending, values, strict=True):
                    if not math.isfinite(v):
                        raise RunError(f"training loss became {v} at step {s} (epoch {epoch})",
                                       "lower train.lr, add warmup (train.scheduler.warmup_epochs), or check the data")
                    all_losses.append(v)
                    loss_weighted += v * bs
                    n_epoch += bs
                    steps_out.write({"step": s, "epoch": epoch, "loss": v, "lr": lr})
                last = pending[-1]
                emit({"event": "step", "step": last[0], "total_steps": plan.total_steps, "epoch": epoch,
                      "epochs": plan.epochs, "loss": values[-1], "lr": last[1],
                      "elapsed_s": round(time.perf_counter() - t0, 3)})
                pending.clear()
                steps_out.flush()

            for x, y, _idx in loader:
                if step >= plan.total_steps:
                    break
                x = x.to(dev, non_blocking=True)
                y = y.to(dev, non_blocking=True)
                lr = optimizer.param_groups[0]["lr"]
                loss = criterion(model(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                step += 1
                images_seen += len(y)
                pending.append((step, lr, len(y), loss.detach()))
                if step % config.train.log_every == 0:
                    flush()
            flush()
            train_s += time.perf_counter() - t_ep

            row: dict[str, Any] = {"epoch": epoch, "step": step, "train_loss": loss_weighted / max(n_epoch, 1)}
            last_epoch = epoch == plan.epochs
            is_best = False
            if epoch % plan.eval_every == 0 or last_epoch:
                t_ev = time.perf_counter()
                ev = evaluate(model, val_ds, criterion, dev, len(bundle.classes), config.train.batch_size,
                              keep=_prediction_indices(config, len(val_ds)) if last_epoch else ())
                eval_s += time.perf_counter() - t_ev
                row.update(val_loss=ev["val_loss"], val_acc=ev["val_acc"],
                           per_class_acc=dict(zip(bundle.classes, ev["per_class_acc"], strict=True)))
                value = ev[config.train.selection_metric]
                if math.isfinite(value) and (best is None or (value > best["value"] if maximize else value < best["value"])):
                    is_best = True
                    best = {"metric": config.train.selection_metric, "value": value, "epoch": epoch, "step": step}
                    best_state = _snapshot(model, optimizer, scheduler)
                if last_epoch:
                    final_eval = ev
            epochs_out.write(row)
            epochs_out.flush()
            log(f"epoch {epoch}/{plan.epochs} step {step}: " + " ".join(
                f"{k}={v:.6f}" for k, v in row.items() if isinstance(v, float)) + (" (best)" if is_best else ""))
            emit({"event": "epoch", **{k: v for k, v in row.items() if k != "per_class_acc"},
                  "epochs": plan.epochs, "total_steps": plan.total_steps, "best": is_best,
                  "elapsed_s": round(time.perf_counter() - t0, 3)})
    finally:
        steps_out.close()
        epochs_out.close()

    if final_eval is None or best is None or best_state is None:
        raise RunError(f"no finite {config.train.selection_metric} was measured, so there is no best checkpoint",
                       "check the validation data and the loss (NaN/inf metrics are never selected)")
    steps_out.finish()
    epochs_out.finish()
    t_art = time.perf_counter()
    summary = _write_outputs(config, out, bundle, model, optimizer, scheduler, plan, best, best_state,
                             final_eval, steps_out.rows, epochs_out.rows, all_losses, step, images_seen,
                             det, device, smoke, val_ds)
    art_s = time.perf_counter() - t_art
    wall = time.perf_counter() - t0
    timing = {"wall_s": wall, "train_s": train_s, "eval_s": eval_s, "artifacts_s": art_s,
              "setup_s": wall - train_s - eval_s - art_s, "images_trained": images_seen,
              "train_images_per_s": images_seen / train_s if train_s else None}
    art.write_json(out / "timing.json", timing)  # not in summary.json: wall time is not reproducible
    log(f"done: steps={step} final val_acc={final_eval['val_acc']:.6f} weights_sha256={summary['weights_sha256']}")
    # summary.json is written last: its presence means the run folder is complete.
    art.write_json(out / "summary.json", summary)
    emit({"event": "done", "steps": step, "total_steps": plan.total_steps, "epochs": plan.epochs,
          "val_acc": final_eval["val_acc"], "val_loss": final_eval["val_loss"], "best": best,
          "weights_sha256": summary["weights_sha256"], "loss_sum_first5": summary["loss_sum_first5"],
          "elapsed_s": round(wall, 3)})
    return {**summary, "timing": timing}


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
def evaluate(model: torch.nn.Module, ds: SeededImageDataset, criterion: torch.nn.Module, dev: torch.device,
             n_classes: int, batch_size: int, keep: Any = ()) -> dict[str, Any]:
    """Val loss (criterion, per-sample mean), accuracy, per-class accuracy, confusion matrix."""
    was_training = model.training
    model.eval()
    keep = set(keep)
    loss_sum = 0.0
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    kept: list[dict[str, Any]] = []
    for start in range(0, len(ds), batch_size):
        keys = [(None, i) for i in range(start, min(start + batch_size, len(ds)))]
        x, y, idx = ds.__getitems__(keys)
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


def _write_outputs(config: Config, out: Path, bundle: DatasetBundle, model: torch.nn.Module, optimizer: Any,
                   scheduler: Any, plan: Plan, best: dict[str, Any], best_state: dict[str, Any],
                   final_eval: dict[str, Any], steps: list[dict[str, Any]], epochs: list[dict[str, Any]],
                   losses: list[float], step: int, images_seen: int, det: dict[str, Any], device: str,
                   smoke: bool, val_ds: SeededImageDataset) -> dict[str, Any]:
    resolved = config.resolved()
    last_state = _snapshot(model, optimizer, scheduler)
    weights_sha = state_dict_sha256(last_state["model"])
    common = {"config": resolved, "classes": bundle.classes, "selection_metric": best["metric"]}
    ckpts = {}
    for name, state, epoch, st, value in (
        ("best.pt", best_state, best["epoch"], best["step"], best["value"]),
        ("last.pt", last_state, plan.epochs, step, epochs[-1].get(best["metric"])),
    ):
        w_sha = weights_sha if state is last_state else state_dict_sha256(state["model"])
        sha = art.save_checkpoint(out / "checkpoints" / name, {
            **state, **common, "epoch": epoch, "step": st, "selection_value": value, "weights_sha256": w_sha,
        })
        ckpts[name] = {"sha256": sha, "epoch": epoch, "step": st, "selection_metric": best["metric"],
                       "selection_value": value, "weights_sha256": w_sha}
    art.write_json(out / "checkpoints" / "checkpoints.json", ckpts)

    art.write_confusion(out / "confusion_matrix.csv", out / "confusion_matrix.png", final_eval["confusion"], bundle.classes)
    kept = final_eval["kept"]
    pred_rows = [{"index": r["index"], "id": bundle.val.images.ids[r["index"]],
                  "true": bundle.classes[r["true"]], "predicted": bundle.classes[r["predicted"]],
                  "confidence": r["confidence"]} for r in kept]
    art.write_json(out / "predictions.json", pred_rows)
    if pred_rows:
        images = [val_ds._image(None, r["index"]).permute(1, 2, 0).numpy() for r in kept]
        art.plot_predictions(out / "predictions.png", images, pred_rows)
    art.plot_curves(out / "curves.png", steps, epochs)

    k = max(1, min(5, len(losses) // 2))
    last_row = epochs[-1]
    return {
        "status": "completed",
        "name": config.name,
        "arch": config.model.arch,
        "device": device,
        "mode": det["mode"],
        "seed": config.seed,
        "smoke": smoke,
        "steps": step,
        "epochs": plan.epochs,
        "images_seen": images_seen,
        "final": {"epoch": last_row["epoch"], "train_loss": last_row["train_loss"],
                  "val_loss": final_eval["val_loss"], "val_acc": final_eval["val_acc"],
                  "per_class_acc": dict(zip(bundle.classes, final_eval["per_class_acc"], strict=True))},
        "best": best,
        "weights_sha256": weights_sha,
        "loss_sum_first5": sum(losses[:5]),
        "loss_first_mean": sum(losses[:k]) / k,
        "loss_last_mean": sum(losses[-k:]) / k,
        "loss_window": k,
        "checkpoints": {n: c["sha256"] for n, c in ckpts.items()},
    }
