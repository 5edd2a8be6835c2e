"""Which pins make CPU training bit-identical across machines, and what do they cost?

    python benchmarks/cpu_pins.py local   [--steps 3] [--threads 1] [--sets NAME ...] [--variations NAME ...]
    python benchmarks/cpu_pins.py speed   [--threads 1 2] [--rounds 3] [--steps 12] [--also NAME ...]
    python benchmarks/cpu_pins.py machine OUT.json [--recipe uniform|torch-only|demo] [--sets NAME ...]
    python benchmarks/cpu_pins.py compare A.json B.json

Every cell trains a ResNet-18 for a few SGD steps in a fresh interpreter (the `worker` sub-command:
seeded init, fixed batches, strict deterministic algorithms, pinned threads) and reports the sha256
of its weights, its losses, and what each CPU math library really ran at (`cpu_math_state`: the MKL
CNR branch, oneDNN's ISA, ATen's capability), read back after training. The pins of a cell are its
pin set (`--sets`, names below) set on top of what the host exported, as a run does.

`local` runs each pin set under every host variation: what another machine (or another user's
shell) would change: ONEDNN_MAX_CPU_ISA / DNNL_MAX_CPU_ISA (SSE41, AVX, AVX2; AVX-512 cannot be
reached on an AVX2 CPU), MKL_CBWR (COMPATIBLE, SSE4_2, AVX, AVX2, each with and without ,STRICT),
MKL_ENABLE_INSTRUCTIONS, ATEN_CPU_CAPABILITY (default, avx2), and the CPUs the process may use (one
or two). A pin set passes when every variation gives the same hash; the cheapest passing set is
what `reproexec.runtime.seeding` pins.

`speed` times training steps (after two warm-up steps) with the pins the runtime uses vs no pins,
in rounds (unpinned, pinned, ...), for each thread count; each ratio is taken within a round and
the median over rounds is printed, so load from other processes on a shared host cancels out.

`machine` runs each pin set once on this machine and writes OUT.json: the CPU, torch's version,
the recipe, and per pin set `"<weights sha256> <ATen level> <last loss>"`. Run it on two machines
(another CPU, the same torch) and `compare` the two files: a pin set keeps its promise when its
hash is the same on both.

Recipes (`--recipe`: what is trained; hashes compare only within one recipe):
  demo        the demo's batch of 64 digits at 32 px (scikit-learn's, 8×8 repeated to 32×32), its
              optimizer (SGD, momentum 0.9, weight decay 5e-4, label smoothing 0.1), seed 1337,
              torchvision's ResNet-18 (`--model plain` for a torch without torchvision)
  torch-only  the same optimizer and seed, 3 steps of 64 inputs computed from integers (exact on
              every CPU) and ResNet-18 in plain torch.nn: needs only torch, so it runs on a bare
              machine such as the GPU box
  uniform     torchvision's ResNet-18, seed 0, 4 steps of 32 inputs drawn uniform from NumPy's
              RandomState(0), SGD with momentum 0.9 and no weight decay or label smoothing: what
              benchmarks/results/cross_cpu_pins_*.json hold (torch 2.11.0+cu130)

Measured with the torch-only recipe, torch 2.11.0+cu130 (MKL 2024.2, oneDNN 3.10), threads 1
unless named (first 16 hex digits of the weights sha256):

    pin set                                   AMD EPYC, AVX2 only       Intel Xeon, AVX-512 + AMX
                                              L1d 32K, L2 512K          L1d 48K, L2 2M
    ATen avx2, oneDNN AVX2, MKL COMPATIBLE    2aae18f099fcd874          2aae18f099fcd874   same
      the same with 2 threads                 6590f47e19762ef1          6590f47e19762ef1   same
    ATen avx2, oneDNN AVX2, MKL AVX2,STRICT   c4214666fb142edc          97c7c1be43fe9836   differs
    ATen avx2, mkldnn off, MKL COMPATIBLE     3cb222ab446cf457          d39cf56e854f0c27   differs
    ATen avx2, mkldnn off, MKL AVX2,STRICT    9a3bff1cb3ab4331          24554f1fb48386ea   differs
    ATen avx2, oneDNN AVX2, MKL unpinned      c4214666fb142edc          4e5054f51ae3af4e   differs
    nothing pinned                            c4214666fb142edc          be5b6589bf90061d   differs

(MKL reads MKL_CBWR=AVX2 as its AVX2 branch on the Xeon but falls back to AUTO on the EPYC: its ISA
branches exist only on Intel CPUs. The two machines' libtorch_cpu.so were different builds of
2.11.0 — PyPI's and the cu130 index's — and still agreed under the full pin set.)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from common import REPO, median, write_json


@dataclass(frozen=True)
class PinSet:
    """What a cell pins on top of the host; None leaves the host's (or the library's) choice."""

    aten: str | None = None  # ATEN_CPU_CAPABILITY
    onednn: str | None = None  # ONEDNN_MAX_CPU_ISA
    mkl: str | None = None  # MKL_CBWR
    mkldnn: bool = True  # False: torch.backends.mkldnn.enabled = False (convolutions as im2col + MKL sgemm)
    threads: int | None = None  # None: the sub-command's --threads
    runtime: bool = False  # instead of the above: whatever reproexec.runtime.seeding pins

    @property
    def name(self) -> str:
        if self.runtime:
            return "runtime"
        parts = [
            f"aten_{self.aten}" if self.aten else "",
            f"onednn_{self.onednn}" if self.onednn else "",
            f"mkl_{self.mkl.replace(',', '_')}" if self.mkl else "",
            "" if self.mkldnn else "mkldnn_off",
            f"threads{self.threads}" if self.threads else "",
        ]
        return "+".join(p for p in parts if p).lower() or "defaults"

    def environment(self, threads: int) -> tuple[dict[str, str], bool]:
        """The variables this set pins, and whether mkldnn stays on."""
        if self.runtime:
            return runtime_pins(threads)
        names = {"ATEN_CPU_CAPABILITY": self.aten, "ONEDNN_MAX_CPU_ISA": self.onednn, "MKL_CBWR": self.mkl}
        return {k: v for k, v in names.items() if v}, self.mkldnn


PIN_SETS = {
    p.name: p
    for p in (
        PinSet(),
        PinSet(aten="avx2"),
        PinSet(aten="avx2", onednn="AVX2"),
        PinSet(aten="avx2", onednn="AVX2", mkl="COMPATIBLE"),
        PinSet(aten="avx2", onednn="AVX2", mkl="COMPATIBLE", threads=2),
        PinSet(aten="avx2", onednn="AVX2", mkl="AVX2,STRICT"),
        PinSet(aten="avx2", onednn="AVX2", mkl="AVX2,STRICT", mkldnn=False),
        PinSet(aten="avx2", mkldnn=False),
        PinSet(aten="avx2", mkl="COMPATIBLE", mkldnn=False),
        PinSet(aten="avx2", mkl="AVX2,STRICT", mkldnn=False),
        PinSet(aten="default", mkl="COMPATIBLE", mkldnn=False),
        PinSet(runtime=True),
    )
}
# `local`'s candidates, cheapest first.
LOCAL_SETS = [
    "aten_avx2",
    "aten_avx2+onednn_avx2",
    "aten_avx2+onednn_avx2+mkl_avx2_strict",
    "aten_avx2+onednn_avx2+mkl_compatible",
    "aten_avx2+mkl_avx2_strict+mkldnn_off",
    "aten_avx2+mkl_compatible+mkldnn_off",
    "runtime",
]
# `machine`'s: every set but "runtime" (which needs reproexec's config model, pydantic, on the machine).
MACHINE_SETS = [name for name in PIN_SETS if name != "runtime"]

VARIATIONS: dict[str, tuple[dict[str, str], set[int] | None]] = {"host default": ({}, None)}
VARIATIONS |= {f"ONEDNN_MAX_CPU_ISA={v}": ({"ONEDNN_MAX_CPU_ISA": v}, None) for v in ("SSE41", "AVX", "AVX2")}
VARIATIONS |= {"DNNL_MAX_CPU_ISA=SSE41": ({"DNNL_MAX_CPU_ISA": "SSE41"}, None)}
VARIATIONS |= {
    f"MKL_CBWR={b}{s}": ({"MKL_CBWR": f"{b}{s}"}, None)
    for b in ("COMPATIBLE", "SSE4_2", "AVX", "AVX2")
    for s in ("", ",STRICT")
}
VARIATIONS |= {f"MKL_ENABLE_INSTRUCTIONS={v}": ({"MKL_ENABLE_INSTRUCTIONS": v}, None) for v in ("SSE4_2", "AVX2")}
VARIATIONS |= {f"ATEN_CPU_CAPABILITY={v}": ({"ATEN_CPU_CAPABILITY": v}, None) for v in ("default", "avx2")}
VARIATIONS |= {"one CPU visible": ({}, {0}), "two CPUs visible": ({}, {0, 1})}

# Taken out of every cell's environment before the variation and the pins go in.
SCRUB = (
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "MKL_CBWR",
    "MKL_ENABLE_INSTRUCTIONS",
    "ONEDNN_CPU_ISA_HINTS",
    "ONEDNN_DEFAULT_FPMATH_MODE",
    "MKL_DYNAMIC",
    "OMP_DYNAMIC",
)


@dataclass(frozen=True)
class Recipe:
    inputs: str  # "digits" (a batches file), "integers" or "uniform" (made in the worker)
    model: str  # "torchvision" or "plain"
    seed: int
    steps: int
    batch: int
    weight_decay: float
    label_smoothing: float


RECIPES = {
    "demo": Recipe("digits", "torchvision", seed=1337, steps=3, batch=64, weight_decay=5e-4, label_smoothing=0.1),
    "torch-only": Recipe("integers", "plain", seed=1337, steps=3, batch=64, weight_decay=5e-4, label_smoothing=0.1),
    "uniform": Recipe("uniform", "torchvision", seed=0, steps=4, batch=32, weight_decay=0.0, label_smoothing=0.0),
}


# ---------------------------------------------------------------------------------------------
# The worker: one cell, in its own interpreter (the pins are read when torch and its libraries load).


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


def make_inputs(recipe: Recipe, steps: int, data: Path | None):
    """(images, labels) for `steps` batches of the recipe, in training order."""
    import numpy as np
    import torch

    n = steps * recipe.batch
    if recipe.inputs == "digits":
        arrays = np.load(data)
        return torch.from_numpy(arrays["x"]), torch.from_numpy(arrays["y"])
    if recipe.inputs == "integers":
        i = torch.arange(n * 3 * 32 * 32, dtype=torch.int64)
        x = ((i * 2654435761 + 12345) % 1000003 % 256).float().div(127.5).sub(1).view(n, 3, 32, 32)
        return x, torch.arange(n) % 10
    rs = np.random.RandomState(0)
    x = rs.uniform(-1, 1, size=(steps, recipe.batch, 3, 32, 32)).astype(np.float32).reshape(n, 3, 32, 32)
    return torch.from_numpy(x), torch.from_numpy(
        rs.randint(0, 10, size=(steps, recipe.batch)).reshape(n).astype(np.int64)
    )


def plain_resnet18(num_classes: int = 10):
    """torchvision's ResNet-18 layout in plain torch.nn, for a torch that has no matching torchvision.

    The attribute names are part of the weights hash (state_dict keys): the table in this module's
    docstring was measured with these."""
    import torch
    import torch.nn as nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
            self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
            self.d = (
                nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                if stride != 1 or cin != cout
                else None
            )

        def forward(self, x):
            r = self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))
            return torch.relu(r + (self.d(x) if self.d is not None else x))

    layers: list[nn.Module] = [
        nn.Conv2d(3, 64, 7, 2, 3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, 1),
    ]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
        cin = cout
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes))
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return model


def weights_sha256(state) -> str:
    """sha256 over the state dict in key order: each key, then its tensor's bytes."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def worker(args: argparse.Namespace) -> int:
    import torch

    from reproexec.runtime.seeding import cpu_math_state

    recipe = RECIPES[args.recipe]
    steps = args.steps or recipe.steps
    if args.mkldnn == "off":
        torch.backends.mkldnn.enabled = False
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    x, y = make_inputs(recipe, steps, args.data)
    torch.manual_seed(recipe.seed)
    if (args.model or recipe.model) == "torchvision":
        import torchvision

        model = torchvision.models.resnet18(weights=None, num_classes=10)
    else:
        model = plain_resnet18()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=recipe.weight_decay)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    model.train()
    b = recipe.batch
    n = len(y) // b
    losses, t0 = [], None
    for step in range(n):
        if step == args.warmup:
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x[step * b : (step + 1) * b]), y[step * b : (step + 1) * b])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    elapsed = time.perf_counter() - t0 if t0 is not None else None
    sha = weights_sha256(model.state_dict())  # before cpu_math_state runs its probes
    print(
        json.dumps(
            {
                "weights_sha256": sha,
                "losses": losses,
                "images_per_s": (n - args.warmup) * b / elapsed if elapsed else None,
                "torch": torch.__version__,
                "state": cpu_math_state(),
            }
        )
    )
    return 0


# ---------------------------------------------------------------------------------------------
# The host side: cells in fresh interpreters.


def runtime_pins(threads: int) -> tuple[dict[str, str], bool]:
    """The environment and mkldnn switch reproexec's runtime uses for cpu_capability avx2."""
    sys.path.insert(0, str(REPO))
    from reproexec.config import validate_config
    from reproexec.runtime.seeding import pinned_environment

    cfg = validate_config(
        {"name": "pins", "data": {"snapshot": "x"}, "determinism": {"threads": threads, "cpu_capability": "avx2"}}
    )
    env = pinned_environment(cfg)
    return {k: v for k, v in env.items() if k not in ("PYTHONHASHSEED", "CUBLAS_WORKSPACE_CONFIG")}, True


def run_cell(
    pins: PinSet,
    threads: int,
    variation: dict[str, str],
    cpus: set[int] | None,
    *,
    recipe: str,
    model: str | None = None,
    steps: int | None = None,
    data: Path | None = None,
    warmup: int = 0,
) -> dict:
    """One worker in a fresh interpreter: the host's environment less SCRUB, then the variation, then
    the pins (the pins override the host, as in a run). Its report, or {"error": [last stderr line]}."""
    threads = pins.threads or threads
    pin_env, mkldnn = pins.environment(threads)
    env = {k: v for k, v in os.environ.items() if k not in SCRUB}
    path = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(REPO)) if p)
    env |= {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONPATH": path}
    env |= variation
    env |= pin_env
    cmd = [
        sys.executable,
        __file__,
        "worker",
        "--recipe",
        recipe,
        "--threads",
        str(threads),
        "--mkldnn",
        "on" if mkldnn else "off",
        "--warmup",
        str(warmup),
    ]
    cmd += ["--model", model] if model else []
    cmd += ["--steps", str(steps)] if steps else []
    cmd += ["--data", str(data)] if data else []
    preexec = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, preexec_fn=preexec, timeout=1800)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def batches_for(recipe: str, steps: int, data: Path | None) -> Path | None:
    """The batches file a digits recipe reads (written from scikit-learn unless given); None otherwise."""
    if RECIPES[recipe].inputs != "digits" or data is not None:
        return data
    data = Path(tempfile.mkdtemp(prefix="cpu-pins-")) / "batches.npz"
    write_batches(data, steps, RECIPES[recipe].batch)
    return data


def local(args: argparse.Namespace) -> int:
    steps = args.steps or RECIPES[args.recipe].steps
    data = batches_for(args.recipe, steps, args.data)
    sets = args.sets or LOCAL_SETS
    variations = {k: v for k, v in VARIATIONS.items() if not args.variations or k in args.variations}
    jobs = [(s, v) for s in sets for v in variations]
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = {
            job: pool.submit(
                run_cell,
                PIN_SETS[job[0]],
                args.threads,
                *variations[job[1]],
                recipe=args.recipe,
                model=args.model,
                steps=steps,
                data=data,
            )
            for job in jobs
        }
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
            line = (
                f"  {v:34s} {hashes[v][:16]}  #{distinct.index(hashes[v])}  mkl={st.get('mkl', {}).get('cnr_branch')}"
                f"  onednn={st.get('onednn', {}).get('isa')}  aten={st.get('aten', {}).get('capability')}"
            )
            print(line)
            report[s]["cells"][v] = {"weights_sha256": hashes[v], "state": st}
    passing = [s for s in sets if report[s]["identical"]]
    print(f"\nidentical under every variation: {', '.join(passing) or 'none'}")
    if args.json:
        write_json(args.json, report, sort_keys=True)
    return 0


def speed(args: argparse.Namespace) -> int:
    data = batches_for(args.recipe, args.steps + 2, None)
    variants = {"unpinned": PIN_SETS["defaults"], "pinned": PIN_SETS["runtime"]}
    variants |= {s: PIN_SETS[s] for s in args.also}
    out = {}
    for threads in args.threads:
        ratios: dict[str, list[float]] = {k: [] for k in variants if k != "unpinned"}
        rates: dict[str, list[float]] = {k: [] for k in variants}
        for r in range(args.rounds):
            got = {
                k: run_cell(
                    p,
                    threads,
                    {},
                    None,
                    recipe=args.recipe,
                    model=args.model,
                    steps=args.steps + 2,
                    data=data,
                    warmup=2,
                )["images_per_s"]
                for k, p in variants.items()
            }
            for k, v in got.items():
                rates[k].append(v)
            for k in ratios:
                ratios[k].append(got[k] / got["unpinned"])
            print(f"threads={threads} round {r + 1}: " + "  ".join(f"{k} {v:.0f} img/s" for k, v in got.items()))
        for k, rs in ratios.items():
            print(
                f"threads={threads}: {k} / unpinned = {median(rs):.2f}x (rounds: {', '.join(f'{x:.2f}' for x in rs)})"
            )
        out[threads] = {"rates": rates, "ratios": ratios}
    if args.json:
        write_json(args.json, out, sort_keys=True)
    return 0


def cpu_model() -> str:
    """The CPU's model name as /proc/cpuinfo gives it ("" where there is none)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")


def machine(args: argparse.Namespace) -> int:
    """One machine's file: {"cpu", "torch", "recipe", "results": {set: "sha256 ATen-level last-loss"},
    "state": {set: cpu_math_state}}."""
    data = batches_for(args.recipe, RECIPES[args.recipe].steps, args.data)
    out: dict = {"cpu": cpu_model(), "torch": None, "recipe": args.recipe, "results": {}, "state": {}}
    for name in args.sets or MACHINE_SETS:
        cell = run_cell(PIN_SETS[name], 1, {}, None, recipe=args.recipe, data=data)
        if "error" in cell:
            out["results"][name] = f"error: {' '.join(cell['error'])}"
        else:
            out["torch"] = out["torch"] or cell["torch"]
            out["results"][name] = (
                f"{cell['weights_sha256']} {cell['state']['aten']['capability']} {cell['losses'][-1]}"
            )
            out["state"][name] = cell["state"]
        print(f"{name:48s} {out['results'][name]}", flush=True)
    write_json(args.out, out)
    return 0


HASH = re.compile(r"[0-9a-f]{16,64}")


def compare(args: argparse.Namespace) -> int:
    """Two machine files side by side (files written before `recipe` was recorded are `uniform`)."""
    files = {"A": json.loads(args.a.read_text()), "B": json.loads(args.b.read_text())}
    recipes = {k: f.get("recipe", "uniform") for k, f in files.items()}
    if recipes["A"] != recipes["B"]:
        sys.exit(
            f"{args.a} trained recipe {recipes['A']!r} and {args.b} recipe {recipes['B']!r}: their weights "
            f"cannot match; run `cpu_pins.py machine OUT.json --recipe {recipes['A']}` on the second machine"
        )
    for key, path in (("A", args.a), ("B", args.b)):
        f = files[key]
        print(
            f"{key}: {path}  cpu {f.get('cpu', '').strip(chr(9) + ' :')}  torch {f.get('torch')}  recipe {recipes[key]}"
        )
    a, b = files["A"]["results"], files["B"]["results"]

    def sha(line: str) -> str | None:
        word = line.split()[0] if line.split() else ""
        return word if HASH.fullmatch(word) else None

    same = 0
    print(f"\n{'pin set':50s} {'A':16s}  {'B':16s}")
    for name in [n for n in a if n in b]:
        ha, hb = sha(a[name]), sha(b[name])
        width = min(len(ha or ""), len(hb or ""))  # 16 digits where a file holds only those
        verdict = "error" if not (ha and hb) else "same" if ha[:width] == hb[:width] else "differs"
        same += verdict == "same"
        print(f"{name:50s} {(ha or 'error')[:16]:16s}  {(hb or 'error')[:16]:16s}  {verdict}")
    for key, mine, other in (("A", a, b), ("B", b, a)):
        if only := [n for n in mine if n not in other]:
            print(f"only in {key}: {', '.join(only)}")
    print(f"\nsame weights on both machines: {same} of {len([n for n in a if n in b])} pin sets")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    names = "pin sets:\n" + "\n".join(f"  {name}" for name in PIN_SETS)
    raw = argparse.RawDescriptionHelpFormatter

    def training(parser: argparse.ArgumentParser, recipe: str, *, model: bool = True) -> None:
        parser.add_argument(
            "--recipe", choices=list(RECIPES), default=recipe, help=f"what is trained (default {recipe})"
        )
        if model:
            parser.add_argument(
                "--model",
                choices=["torchvision", "plain"],
                help="override the recipe's model; plain: for a torch without a matching torchvision",
            )

    loc = sub.add_parser(
        "local", epilog=names, formatter_class=raw, help="each pin set under every host variation, on this machine"
    )
    training(loc, "demo")
    loc.add_argument("--steps", type=int, help="training steps (default: the recipe's)")
    loc.add_argument("--threads", type=int, default=1)
    loc.add_argument("--jobs", type=int, default=2, help="cells run at once (results do not depend on it)")
    loc.add_argument(
        "--sets", nargs="*", choices=list(PIN_SETS), metavar="NAME", help=f"default: {' '.join(LOCAL_SETS)}"
    )
    loc.add_argument(
        "--variations",
        nargs="*",
        choices=list(VARIATIONS),
        metavar="NAME",
        help="default: all of " + ", ".join(f"'{v}'" for v in VARIATIONS),
    )
    loc.add_argument("--data", type=Path, help="batches written by write_batches (default: from scikit-learn)")
    loc.add_argument("--json", type=Path)
    s = sub.add_parser("speed", epilog=names, formatter_class=raw, help="images/s with the runtime's pins vs none")
    training(s, "demo")
    s.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    s.add_argument("--rounds", type=int, default=3)
    s.add_argument("--steps", type=int, default=12)
    s.add_argument(
        "--also", nargs="*", default=[], choices=list(PIN_SETS), metavar="NAME", help="more pin sets to time"
    )
    s.add_argument("--json", type=Path)
    m = sub.add_parser(
        "machine",
        epilog=names,
        formatter_class=raw,
        help="this machine's weights per pin set, to compare with another machine's",
    )
    training(m, "uniform", model=False)
    m.add_argument("out", type=Path, metavar="OUT.json")
    m.add_argument("--sets", nargs="*", choices=list(PIN_SETS), metavar="NAME", help="default: every set but runtime")
    m.add_argument("--data", type=Path, help="for --recipe demo: batches written by write_batches")
    c = sub.add_parser("compare", help="two machine files side by side")
    c.add_argument("a", type=Path, metavar="A.json")
    c.add_argument("b", type=Path, metavar="B.json")
    w = sub.add_parser("worker", help="one cell (run by the others in a fresh interpreter)")
    training(w, "demo")
    w.add_argument("--data", type=Path, help="the batches file of a digits recipe")
    w.add_argument("--steps", type=int)
    w.add_argument("--threads", type=int, default=1)
    w.add_argument("--mkldnn", choices=["on", "off"], default="on")
    w.add_argument("--warmup", type=int, default=0)
    args = p.parse_args()
    commands = {"local": local, "speed": speed, "machine": machine, "compare": compare, "worker": worker}
    return commands[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
