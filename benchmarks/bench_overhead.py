"""Where a run's time goes outside training: the demo per runtime, phase by phase (issue 15).

    python benchmarks/bench_overhead.py [--rounds 3] [--runtimes docker,local] [--json out.json]

In one command, alternating runtime by runtime each round so machine noise hits each alike:
  run     `reproexec run examples/digits/config.yaml [--runtime local]` with the image present and
          the dataset unchanged (a warm-up run first, not counted). Outside the trainer = the
          command's wall time (measured here) minus the trainer's own `wall_s` (timing.json).
          Per phase: the median of run.json `timing.phases_s` over the rounds.
  build   `reproexec build` on a cache hit vs `docker image ls` (the floor for asking the engine).
  smoke   `reproexec smoke` on the demo, once and twice, as ratios to a full demo run (--only smoke).
  import  `python -c "import torch, torchvision"` in a fresh interpreter: the floor every PyTorch
          run pays before its first step, whatever runs it.
  floors  (`--only floors` runs just these) what no change to reproexec can remove, each the median
          of 5: in the run image, `docker run … true`, `import torch` (ended with os._exit, as the
          trainer ends), `import torchvision` after it, and where a plain torch.optim step imports
          torch._dynamo without torchvision; on the host, importing the CLI's libraries (typer,
          pydantic, docker, jinja2, PyYAML, rich) against `docker image ls`.
Ratios are the result (the machine is shared and noisy); seconds are printed for context.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import CLI, REPO, median, timed, write_json

CONFIG = REPO / "examples" / "digits" / "config.yaml"


def newest_run(runs: Path, before: set[str]) -> Path:
    new = [p for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in before]
    if len(new) != 1:
        sys.exit(f"expected one new run in {runs}, found {[p.name for p in new]}")
    return new[0]


def smoke(runs: Path, rounds: int) -> dict:
    """`reproexec smoke` on the demo (in its image): once, twice, and a full demo run, alternating, as
    ratios to the full run; the share of a smoke run outside the trainer's own steps."""
    one_run("docker", runs)  # warm-up: the image built or checked
    full, once, twice, steps = [], [], [], []
    for _ in range(rounds):
        full.append(one_run("docker", runs)["wall_s"])
        for flags, into in (([], twice), (["--once"], once)):
            folder = Path(tempfile.mkdtemp(prefix="bench-smoke-"))
            into.append(timed([CLI, "smoke", str(CONFIG), "--out", str(folder), *flags], cwd=REPO).wall_s)
            doc = json.loads((folder / "smoke.json").read_text())
            if flags:
                steps.append(doc["steps_s"])
    f, o, w = median(full), median(once), median(twice)
    res = {
        "demo_run_s": f,
        "smoke_once_s": o,
        "smoke_twice_s": w,
        "once_over_run": o / f,
        "twice_over_run": w / f,
        "twice_over_once": w / o,
        "once_outside_steps_share": 1 - median(steps) / o,
    }
    print(
        f"smoke once {o:.1f} s ({o / f:.2f}× a demo run of {f:.1f} s), twice {w:.1f} s ({w / f:.2f}×, {w / o:.2f}× once); "
        f"{res['once_outside_steps_share']:.0%} of a smoke run outside its steps"
    )
    return res


def one_run(runtime: str, runs: Path) -> dict:
    before = {p.name for p in runs.iterdir()} if runs.exists() else set()
    cmd = [CLI, "run", str(CONFIG), "--runs-dir", str(runs)] + (["--runtime", "local"] if runtime == "local" else [])
    wall = timed(cmd, cwd=REPO).wall_s
    run_dir = newest_run(runs, before)
    record = json.loads((run_dir / "run.json").read_text())
    trainer = json.loads((run_dir / "timing.json").read_text())
    return {
        "wall_s": wall,
        "trainer_wall_s": trainer["wall_s"],
        "outside_s": wall - trainer["wall_s"],
        "phases": dict(record["timing"]["phases_s"]),
        "run_dir": str(run_dir),
        "weights": json.loads((run_dir / "summary.json").read_text()).get("weights_sha256"),
    }


# Runs in the run image: torch's own optimizers import torch._dynamo, with no torchvision in the
# process (torch 2.x wraps Optimizer.add_param_group in torch._disable_dynamo, and step() calls
# torch._dynamo.graph_break()). So dynamo's import is paid by any training step, whoever imports it first.
PROBE = """
import json, os, sys, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
m = torch.nn.Linear(4, 2)
before = "torch._dynamo" in sys.modules
t2 = time.perf_counter()
opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
t3 = time.perf_counter()
after = "torch._dynamo" in sys.modules
opt2 = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
t4 = time.perf_counter()
print(json.dumps({"import_torch_s": t1 - t0, "dynamo_before_optimizer": before, "dynamo_after_optimizer": after,
                  "first_optimizer_s": t3 - t2, "second_optimizer_s": t4 - t3}))
sys.stdout.flush(); os._exit(0)
"""

CLI_LIBS = "import typer, typer._adapters, pydantic, docker, jinja2, yaml, rich.console"


def floors() -> dict:
    """What a run and a cache-hit check pay before reproexec's own work: each the median of 5."""
    tag = (
        subprocess.run([CLI, "build", str(CONFIG)], capture_output=True, text=True, check=True)
        .stdout.split("tag", 1)[1]
        .split()[0]
    )
    docker = ["docker", "run", "--rm", "--network", "none", tag]

    def five(cmd: list[str]) -> float:
        return median(timed(cmd, cwd=REPO).wall_s for _ in range(5))

    out: dict = {"image": tag}
    out["docker_run_true_s"] = five([*docker, "true"])
    out["image_python_pass_s"] = five([*docker, "python", "-c", "import os; os._exit(0)"])
    out["image_import_torch_s"] = five([*docker, "python", "-c", "import os, torch; os._exit(0)"])
    out["image_import_torch_torchvision_s"] = five(
        [*docker, "python", "-c", "import os, torch, torchvision; os._exit(0)"]
    )
    probes = [json.loads(timed([*docker, "python", "-c", PROBE], cwd=REPO).stdout) for _ in range(5)]
    out["optim_step"] = {
        k: (median(p[k] for p in probes) if isinstance(probes[0][k], float) else probes[0][k]) for k in probes[0]
    }
    out["host_cli_libs_s"] = five([sys.executable, "-c", CLI_LIBS])
    out["host_python_pass_s"] = five([sys.executable, "-c", "pass"])
    out["host_reproexec_version_s"] = five([CLI, "--version"])  # the CLI's own start (its version asks git)
    out["docker_image_ls_s"] = five(["docker", "image", "ls"])
    # Outside the trainer, at the least: the CLI's libraries, a container, Python with torch and torchvision.
    out["run_floor_s"] = out["host_cli_libs_s"] + out["image_import_torch_torchvision_s"]
    out["build_check_floor_over_image_ls"] = out["host_cli_libs_s"] / out["docker_image_ls_s"]
    o = out["optim_step"]
    print(
        f"floors (medians of 5, s): docker run true {out['docker_run_true_s']:.2f}; in the image: python "
        f"{out['image_python_pass_s']:.2f}, +import torch {out['image_import_torch_s']:.2f}, +torchvision "
        f"{out['image_import_torch_torchvision_s']:.2f} (each including docker run)"
    )
    print(
        f"  torch.optim, no torchvision: torch._dynamo loaded before the first optimizer {o['dynamo_before_optimizer']}, "
        f"after {o['dynamo_after_optimizer']}; first SGD(...) {o['first_optimizer_s']:.2f} s, second "
        f"{o['second_optimizer_s']:.4f} s"
    )
    print(
        f"  host: reproexec --version {out['host_reproexec_version_s']:.2f} s; "
        f"CLI libraries {out['host_cli_libs_s']:.2f} s (python -c pass {out['host_python_pass_s']:.3f}), "
        f"docker image ls {out['docker_image_ls_s']:.2f} s: {out['build_check_floor_over_image_ls']:.1f}× before any work"
    )
    print(
        f"  a run's floor outside the trainer: {out['run_floor_s']:.2f} s (CLI libraries + container + torch + torchvision)"
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runtimes", default="docker,local")
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--only", choices=["floors", "smoke"], help="measure only the floors (about a minute) or the smoke test"
    )
    args = ap.parse_args()
    if args.only:
        runs = Path(tempfile.mkdtemp(prefix="bench-overhead-")) / "runs"
        out = {"floors": floors()} if args.only == "floors" else {"smoke": smoke(runs, args.rounds)}
        if args.json:
            write_json(args.json, out)
        return
    runtimes = args.runtimes.split(",")
    runs = Path(tempfile.mkdtemp(prefix="bench-overhead-")) / "runs"
    runs.mkdir()
    out: dict = {"rounds": args.rounds}

    for rt in runtimes:  # warm-up: image built/checked, page cache filled; not counted
        one_run(rt, runs)
    samples: dict[str, list[dict]] = {rt: [] for rt in runtimes}
    for _ in range(args.rounds):
        for rt in runtimes:
            samples[rt].append(one_run(rt, runs))

    print(f"demo, {args.rounds} rounds, medians (s)")
    for rt in runtimes:
        s = samples[rt]
        names = list(dict.fromkeys(k for x in s for k in x["phases"]))
        phases = {k: median(x["phases"].get(k, 0.0) for x in s) for k in names}
        row = {
            "wall_s": median(x["wall_s"] for x in s),
            "trainer_wall_s": median(x["trainer_wall_s"] for x in s),
            "outside_s": median(x["outside_s"] for x in s),
            "outside_range_s": [min(x["outside_s"] for x in s), max(x["outside_s"] for x in s)],
            "phases_s": phases,
            "weights": sorted({x["weights"] for x in s}),
            "last_run": s[-1]["run_dir"],
        }
        row["outside_over_trainer"] = row["outside_s"] / row["trainer_wall_s"]
        out[rt] = row
        print(
            f"  {rt:6s} wall {row['wall_s']:6.2f}  trainer {row['trainer_wall_s']:6.2f}  outside "
            f"{row['outside_s']:5.2f} ({row['outside_range_s'][0]:.2f}–{row['outside_range_s'][1]:.2f}) "
            f"= {row['outside_over_trainer']:.3f}× the trainer"
        )
        print("         " + "  ".join(f"{k} {v:.2f}" for k, v in phases.items()))
        print(f"         weights {', '.join(w[:12] for w in row['weights'])}  last run {row['last_run']}")

    # The cache-hit image check against the engine's own listing, alternating.
    b, d = [], []
    for _ in range(5):
        b.append(timed([CLI, "build", str(CONFIG)], cwd=REPO).wall_s)
        d.append(timed(["docker", "image", "ls"], cwd=REPO).wall_s)
    out["build_cache_hit"] = {
        "reproexec_build_s": median(b),
        "docker_image_ls_s": median(d),
        "ratio": median(b) / median(d),
    }
    print(f"cache-hit build {median(b):.2f} s vs docker image ls {median(d):.2f} s = {median(b) / median(d):.1f}×")

    out["smoke"] = smoke(runs, args.rounds)

    imp = [timed([sys.executable, "-c", "import torch, torchvision"], cwd=REPO).wall_s for _ in range(3)]
    nothing = [timed([sys.executable, "-c", "pass"], cwd=REPO).wall_s for _ in range(3)]
    out["import_torch_torchvision_s"] = median(imp)
    out["python_pass_s"] = median(nothing)
    print(f"import torch, torchvision: {median(imp):.2f} s (python -c pass {median(nothing):.3f} s)")
    out["floors"] = floors()
    if args.json:
        write_json(args.json, out)


if __name__ == "__main__":
    main()
