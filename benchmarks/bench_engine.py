"""What does the engine's bookkeeping cost? `python benchmarks/bench_engine.py [--device cpu|cuda]`

Compares, in one process, on the digits images (written to a temp folder from scikit-learn):
- plain:   a bare PyTorch loop: same model init, optimizer, LR schedule, batch size and data, the
           images pre-decoded and pre-normalized into one tensor, shuffled with randperm, no logging,
           no per-sample seeding, no eval, no files.
- strict:  run_training in strict mode (per-sample seeded pipeline, per-step metrics, eval each
           epoch, checkpoints, plots, environment capture).
- relaxed: run_training in relaxed mode.

Reported throughputs (images/s): `train` counts only the training-step phase of run_training
(data pipeline + steps + per-step bookkeeping; timing.json's train_s), `wall` the whole call
(setup, eval, checkpoints and plots included). Goal: strict train / plain >= 0.95.
Variants run in rounds (plain, strict, relaxed, --repeats times); each ratio is taken within a round
and the median over rounds is reported, so load from other processes on the host cancels as far
as it can. The per-round numbers are printed too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from common import median, write_json


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--size", type=int, default=32, help="image side after resize")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cpu-capability", default="avx2", choices=["default", "avx2", "avx512"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    return p.parse_args()


def _write_digits(root: Path) -> Path:
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    for i, (img, label) in enumerate(zip(d.images, d.target, strict=True)):
        folder = root / ("val" if i % 5 == 0 else "train") / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((img * (255 / 16)).round().astype(np.uint8), mode="L").save(folder / f"{i:04d}.png")
    return root


def main() -> int:
    args = _args()
    # Before torch is imported: the dispatch level is read once, at import.
    os.environ["ATEN_CPU_CAPABILITY"] = args.cpu_capability
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # And MKL/oneDNN, read at their first call: the plain loop runs first and must not set them unpinned.
    from reproexec.config import validate_config
    from reproexec.runtime.seeding import cpu_math_environment

    os.environ.update(
        cpu_math_environment(
            validate_config(
                {
                    "name": "bench",
                    "data": {"snapshot": "-"},
                    "determinism": {"threads": args.threads, "cpu_capability": args.cpu_capability},
                }
            )
        )
    )
    import torch

    from reproexec.runtime.datasets import SeededImageDataset, load_dataset
    from reproexec.runtime.model import build_model
    from reproexec.runtime.trainer import (
        LrFactor,
        make_optimizer,
        make_plan,
        run_training,
    )

    if args.device == "cuda" and not torch.cuda.is_available():
        print("CUDA not available", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="reproexec-bench-"))
    data = _write_digits(tmp / "digits")

    def config(mode: str):
        return validate_config(
            {
                "name": "bench",
                "data": {"snapshot": str(data)},
                "model": {"arch": args.arch, "num_classes": 10},
                "augment": {"resize": [args.size, args.size], "normalize": {"mean": [0.5] * 3, "std": [0.5] * 3}},
                "train": {
                    "epochs": args.epochs,
                    "batch_size": args.batch_size,
                    "lr": 0.05,
                    "log_every": 10,
                    "scheduler": {"name": "cosine"},
                },
                "determinism": {"mode": mode, "threads": args.threads, "cpu_capability": args.cpu_capability},
                "output": {"sample_predictions": 16},
            }
        )

    dev = torch.device(args.device)
    strict_cfg = config("strict")
    bundle = load_dataset(strict_cfg, data)
    ds = SeededImageDataset(bundle.train, strict_cfg, train=False)  # no random ops configured anyway
    x_all, y_all, _ = ds.__getitems__([(None, i) for i in range(len(ds))])
    plan = make_plan(strict_cfg, len(ds), smoke=False)

    def plain() -> dict:
        torch.set_num_threads(args.threads)
        torch.manual_seed(0)
        model = build_model(strict_cfg).to(dev)
        opt = make_optimizer(strict_cfg, model)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, LrFactor(strict_cfg, plan))
        crit = torch.nn.CrossEntropyLoss()
        model.train()
        g = torch.Generator().manual_seed(0)
        n = 0
        t = time.perf_counter()
        for _ in range(plan.epochs):
            perm = torch.randperm(len(y_all), generator=g)
            for s in range(0, len(perm), args.batch_size):
                idx = perm[s : s + args.batch_size]
                if len(idx) == 1:
                    continue
                x, y = x_all[idx].to(dev, non_blocking=True), y_all[idx].to(dev, non_blocking=True)
                loss = crit(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                n += len(idx)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t
        return {"train": n / dt, "wall": n / dt}

    def engine(mode: str) -> dict:
        out = Path(tempfile.mkdtemp(dir=tmp, prefix=mode))
        s = run_training(config(mode), data, out, args.device)
        tm = s["timing"]
        return {"train": tm["images_trained"] / tm["train_s"], "wall": tm["images_trained"] / tm["wall_s"]}

    variants = {"plain": plain, "strict": lambda: engine("strict"), "relaxed": lambda: engine("relaxed")}
    plain()  # warm-up: allocator, kernels, page cache
    rounds: list[dict[str, dict]] = []
    for i in range(args.repeats):
        rnd = {}
        for name, fn in variants.items():
            rnd[name] = fn()
            print(
                json.dumps({"round": i, "variant": name, **{k: round(v, 1) for k, v in rnd[name].items()}}), flush=True
            )
        rounds.append(rnd)

    def ratio(a: str, am: str, b: str, bm: str) -> float:
        return round(median([r[a][am] / r[b][bm] for r in rounds]), 4)

    result = {
        "device": args.device,
        "arch": args.arch,
        "image_size": args.size,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "threads": args.threads,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "repeats": args.repeats,
        "images_per_s_median": {
            k: {m: round(median([r[k][m] for r in rounds]), 1) for m in ("train", "wall")} for k in variants
        },
        "ratios_median": {
            "strict_train_vs_plain": ratio("strict", "train", "plain", "train"),
            "strict_wall_vs_plain": ratio("strict", "wall", "plain", "train"),
            "relaxed_train_vs_plain": ratio("relaxed", "train", "plain", "train"),
            "strict_vs_relaxed_train": ratio("strict", "train", "relaxed", "train"),
            "strict_vs_relaxed_wall": ratio("strict", "wall", "relaxed", "wall"),
        },
    }
    print(json.dumps(result, indent=2))
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
