"""Which pins make CPU training bit-identical across machines, and what do they cost?

    python benchmarks/cpu_pins.py matrix [--steps 3] [--threads 1] [--sets NAME ...]
    python benchmarks/cpu_pins.py speed  [--threads 1 2] [--rounds 3] [--steps 12]

`matrix` trains a ResNet-18 for a few SGD steps (the demo's batch of 64 digits at 32 px, its
optimizer settings) in a fresh interpreter per cell, once per (candidate pin set × host
variation), and prints the weights sha256 of each cell. A host variation is what another machine
(or another user's shell) would change: ONEDNN_MAX_CPU_ISA / DNNL_MAX_CPU_ISA (SSE41, AVX, AVX2;
AVX-512 cannot be reached on an AVX2 CPU), MKL_CBWR (COMPATIBLE, SSE4_2, AVX, AVX2, each with and
without ,STRICT), MKL_ENABLE_INSTRUCTIONS, ATEN_CPU_CAPABILITY (default, avx2), and the CPUs the
process may use (one or two). The variation is set first and the pin set on top of it, exactly as
a run does (the pinned variables override the host's). A pin set passes when every variation gives
the same hash; the cheapest passing set is what `reproexec.runtime.seeding` pins. Each cell also
reads back what each library really ran at (`cpu_math_state`): the MKL CNR branch, oneDNN's ISA,
ATen's capability.

`speed` times training steps (after two warm-up steps) with the pins the runtime uses vs no pins,
in rounds (unpinned, pinned, ...), for each thread count; each ratio is taken within a round and
the median over rounds is printed, so load from other processes on a shared host cancels out.

The worker (`worker` subcommand) is the same code for both: seeded init, fixed batches, SGD with
momentum, weight decay and label smoothing, strict deterministic algorithms, pinned threads.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Candidate pin sets, cheapest first. "mkldnn": False means torch.backends.mkldnn.enabled = False
# in the trainer (convolutions then run as im2col + MKL sgemm).
ATEN = {"ATEN_CPU_CAPABILITY": "avx2"}
CANDIDATES: dict[str, dict] = {
    "aten": {"env": ATEN, "mkldnn": True},
    "aten+onednn": {"env": {**ATEN, "ONEDNN_MAX_CPU_ISA": "AVX2"}, "mkldnn": True},
    "aten+onednn+mkl_avx2_strict": {"env": {**ATEN, "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2,STRICT"},
                                    "mkldnn": True},
    "aten+onednn+mkl_compatible": {"env": {**ATEN, "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "COMPATIBLE"},
                                   "mkldnn": True},
    "aten+mkldnn_off+mkl_avx2_strict": {"env": {**ATEN, "MKL_CBWR": "AVX2,STRICT"}, "mkldnn": False},
    "aten+mkldnn_off+mkl_compatible": {"env": {**ATEN, "MKL_CBWR": "COMPATIBLE"}, "mkldnn": False},
    "runtime": {"env": "runtime", "mkldnn": "runtime"},  # whatever reproexec.runtime.seeding pins
}

VARIATIONS: dict[str, tuple[dict[str, str], set[int] | None]] = {"host default": ({}, None)}
VARIATIONS |= {f"ONEDNN_MAX_CPU_ISA={v}": ({"ONEDNN_MAX_CPU_ISA": v}, None) for v in ("SSE41", "AVX", "AVX2")}
VARIATIONS |= {"DNNL_MAX_CPU_ISA=SSE41": ({"DNNL_MAX_CPU_ISA": "SSE41"}, None)}
VARIATIONS |= {f"MKL_CBWR={b}{s}": ({"MKL_CBWR": f"{b}{s}"}, None)
               for b in ("COMPATIBLE", "SSE4_2", "AVX", "AVX2") for s in ("", ",STRICT")}
VARIATIONS |= {f"MKL_ENABLE_INSTRUCTIONS={v}": ({"MKL_ENABLE_INSTRUCTIONS": v}, None) for v in ("SSE4_2", "AVX2")}
VARIATIONS |= {f"ATEN_CPU_CAPABILITY={v}": ({"ATEN_CPU_CAPABILITY": v}, None) for v in ("default", "avx2")}
VARIATIONS |= {"one CPU visible": ({}, {0}), "two CPUs visible": ({}, {0, 1})}

SCRUB = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS",
         "ONEDNN_CPU_ISA_HINTS", "ONEDNN_DEFAULT_FPMATH_MODE", "MKL_DYNAMIC", "OMP_DYNAMIC")


def write_batches(path: Path, steps: int, batch: int = 64) -> None:
    """The demo's images as the trainer sees them (8×8 digits → 32×32, 3 channels, normalized 0.5/0.5),
    scaled with an exact nearest-neighbour repeat so the input bytes are the same everywhere."""
    import numpy as np
    from sklearn.datasets import load_digits

    d = load_digits()
    order = np.random.RandomState(0).permutation(len(d.target))[: steps * batch]
    x = (d.images[order] / 16.0).astype(np.float32)
    x = np.repeat(np.repeat(x, 4, axis=1), 4, axis=2)[:, None].repeat(3, axis=1)
    np.savez(path, x=(x - 0.5) / 0.5, y=d.target[order].astype(np.int64))


def plain_resnet18(num_classes: int = 10):
    """torchvision's ResNet-18 layout in plain torch.nn, for a torch that has no matching torchvision
    (the cross-machine check runs one torch wheel on both machines)."""
    import torch.nn as nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                               if stride != 1 or cin != cout else None)

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + (self.downsample(x) if self.downsample is not None else x))

    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
        cin = cout
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes))
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return model


def state_sha256(state) -> str:
    import hashlib

    import torch

    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def worker(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from reproexec.runtime.seeding import cpu_math_state

    if args.mkldnn == "off":
        torch.backends.mkldnn.enabled = False
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    data = np.load(args.data)
    x, y = torch.from_numpy(data["x"]), torch.from_numpy(data["y"])
    torch.manual_seed(1337)
    if args.model == "torchvision":
        import torchvision

        model = torchvision.models.resnet18(weights=None, num_classes=10)
    else:
        model = plain_resnet18()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    model.train()
    n = len(y) // args.batch
    losses, t0 = [], None
    for step in range(n):
        if step == args.warmup:
            t0 = time.perf_counter()
        xb, yb = x[step * args.batch:(step + 1) * args.batch], y[step * args.batch:(step + 1) * args.batch]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    elapsed = time.perf_counter() - t0 if t0 is not None else None
    timed = n - args.warmup
    print(json.dumps({
        "weights_sha256": state_sha256(model.state_dict()),
        "losses": losses,
        "images_per_s": timed * args.batch / elapsed if elapsed else None,
        "state": cpu_math_state(),
    }))
    return 0


def runtime_pins(threads: int) -> tuple[dict[str, str], bool]:
    """The environment and mkldnn switch reproexec's runtime uses for cpu_capability avx2."""
    sys.path.insert(0, str(REPO))
    from reproexec.config import validate_config
    from reproexec.runtime.seeding import pinned_environment

    cfg = validate_config({"name": "pins", "data": {"snapshot": "x"},
                           "determinism": {"threads": threads, "cpu_capability": "avx2"}})
    env = pinned_environment(cfg)
    return {k: v for k, v in env.items() if k not in ("PYTHONHASHSEED", "CUBLAS_WORKSPACE_CONFIG")}, True


def run_cell(data: Path, steps: int, threads: int, pins: dict, variation: dict[str, str], cpus: set[int] | None,
             warmup: int = 0, model: str = "torchvision") -> dict:
    pin_env, mkldnn = pins["env"], pins["mkldnn"]
    if pin_env == "runtime":
        pin_env, mkldnn = runtime_pins(threads)
    env = {k: v for k, v in os.environ.items() if k not in SCRUB}
    path = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(REPO)) if p)
    env |= {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONPATH": path}
    env |= variation
    env |= pin_env  # the pins override the host, as in a run
    cmd = [sys.executable, __file__, "worker", "--data", str(data), "--threads", str(threads),
           "--mkldnn", "on" if mkldnn else "off", "--warmup", str(warmup), "--model", model]
    preexec = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, preexec_fn=preexec, timeout=1800)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def matrix(args: argparse.Namespace) -> int:
    data = args.data
    if data is None:
        data = Path(tempfile.mkdtemp(prefix="cpu-pins-")) / "batches.npz"
        write_batches(data, args.steps)
    sets = args.sets or list(CANDIDATES)
    variations = {k: v for k, v in VARIATIONS.items() if not args.variations or k in args.variations}
    jobs = [(s, v) for s in sets for v in variations]
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = {job: pool.submit(run_cell, data, args.steps, args.threads, CANDIDATES[job[0]],
                                    *variations[job[1]], model=args.model) for job in jobs}
        cells = {job: f.result() for job, f in futures.items()}
    report: dict[str, dict] = {}
    for s in sets:
        hashes = {v: cells[(s, v)].get("weights_sha256") or f"ERROR {cells[(s, v)].get('error')}" for v in variations}
        distinct = sorted(set(hashes.values()))
        report[s] = {"identical": len(distinct) == 1, "distinct": len(distinct), "cells": {}}
        print(f"\n== {s}: {'IDENTICAL' if len(distinct) == 1 else f'{len(distinct)} different results'}")
        for v in variations:
            c = cells[(s, v)]
            st = c.get("state") or {}
            line = (f"  {v:34s} {hashes[v][:16]}  #{distinct.index(hashes[v])}  mkl={st.get('mkl', {}).get('cnr_branch')}"
                    f"  onednn={st.get('onednn', {}).get('isa')}  aten={st.get('aten', {}).get('capability')}")
            print(line)
            report[s]["cells"][v] = {"weights_sha256": hashes[v], "state": st}
    passing = [s for s in sets if report[s]["identical"]]
    print(f"\nidentical under every variation: {', '.join(passing) or 'none'}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return 0


def speed(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="cpu-pins-"))
    data = tmp / "batches.npz"
    write_batches(data, args.steps + 2)
    variants = {"unpinned": {"env": {}, "mkldnn": True}, "pinned": CANDIDATES["runtime"]}
    variants |= {s: CANDIDATES[s] for s in args.also}
    out = {}
    for threads in args.threads:
        ratios: dict[str, list[float]] = {k: [] for k in variants if k != "unpinned"}
        rates: dict[str, list[float]] = {k: [] for k in variants}
        for r in range(args.rounds):
            got = {k: run_cell(data, args.steps + 2, threads, p, {}, None, warmup=2)["images_per_s"]
                   for k, p in variants.items()}
            for k, v in got.items():
                rates[k].append(v)
            for k in ratios:
                ratios[k].append(got[k] / got["unpinned"])
            print(f"threads={threads} round {r + 1}: " + "  ".join(f"{k} {v:.0f} img/s" for k, v in got.items()))
        for k, rs in ratios.items():
            print(f"threads={threads}: {k} / unpinned = {statistics.median(rs):.2f}x "
                  f"(rounds: {', '.join(f'{x:.2f}' for x in rs)})")
        out[threads] = {"rates": rates, "ratios": ratios}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("matrix")
    m.add_argument("--steps", type=int, default=3)
    m.add_argument("--threads", type=int, default=1)
    m.add_argument("--jobs", type=int, default=2, help="cells run at once (results do not depend on it)")
    m.add_argument("--sets", nargs="*", choices=list(CANDIDATES))
    m.add_argument("--variations", nargs="*", choices=list(VARIATIONS))
    m.add_argument("--model", choices=["torchvision", "plain"], default="torchvision",
                   help="plain: ResNet-18 in plain torch.nn, for a torch without a matching torchvision")
    m.add_argument("--data", type=Path, help="batches written by write_batches (default: from scikit-learn)")
    m.add_argument("--json", type=Path)
    s = sub.add_parser("speed")
    s.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    s.add_argument("--rounds", type=int, default=3)
    s.add_argument("--steps", type=int, default=12)
    s.add_argument("--also", nargs="*", default=[], choices=list(CANDIDATES), help="more pin sets to time")
    s.add_argument("--json", type=Path)
    w = sub.add_parser("worker")
    w.add_argument("--data", type=Path, required=True)
    w.add_argument("--threads", type=int, default=1)
    w.add_argument("--mkldnn", choices=["on", "off"], default="on")
    w.add_argument("--batch", type=int, default=64)
    w.add_argument("--warmup", type=int, default=0)
    w.add_argument("--model", choices=["torchvision", "plain"], default="torchvision")
    args = p.parse_args()
    return {"matrix": matrix, "speed": speed, "worker": worker}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
