"""What a cold build of the demo image costs in disk and time: this checkout against another revision.

    python benchmarks/bench_build_disk.py [--baseline REV] [--rounds 1]

REV (default cff5617: the multi-stage Dockerfile whose install stage copied the wheels in and the
run image copied the environment out) is checked out in a temporary git worktree and run with this
checkout's .venv. The two builds alternate in one command. Before each, every reproexec image (run
and code images) and every untagged image are removed, so neither finds Docker's build cache; the
wheel cache stays (both read the same cached wheels: the download is not measured). During each
build the free space of Docker's disk is sampled every 0.25 s: `peak` is the most it went down,
`kept` how much it stayed down once the build ended. Needs a Docker engine and the base image
(`reproexec base bootstrap`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIG = "examples/digits/config.yaml"


def forget_images() -> None:
    """No reproexec image and no untagged image: no layer a build could reuse (the base stays)."""
    refs = subprocess.run(["docker", "images", "-q", "--filter", "reference=reproexec-env", "--filter",
                           "reference=reproexec-code"], capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    if refs:
        subprocess.run(["docker", "rmi", "-f", *set(refs)], capture_output=True)
    subprocess.run(["docker", "image", "prune", "-f"], capture_output=True, check=True)


def build(checkout: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    cmd = [sys.executable, "-m", "reproexec", "build", CONFIG]
    tag = subprocess.run([*cmd, "--dry-run"], cwd=checkout, env=env, check=True, capture_output=True, text=True).stdout.split()[-1]
    forget_images()
    disk = "/var/lib/docker" if Path("/var/lib/docker").exists() else "/"
    start = shutil.disk_usage(disk).free
    low, done = start, threading.Event()

    def sample() -> None:
        nonlocal low
        while not done.is_set():
            low = min(low, shutil.disk_usage(disk).free)
            time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    done.set()
    sampler.join()
    if r.returncode != 0:
        sys.exit(f"build failed in {checkout}:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    end = shutil.disk_usage(disk).free
    size = int(subprocess.run(["docker", "image", "inspect", tag, "--format", "{{.Size}}"], check=True,
                              capture_output=True, text=True).stdout)  # fmt: skip
    forget_images()
    return {"wall_s": wall, "peak_gb": (start - low) / 1e9, "kept_gb": (start - end) / 1e9, "image_gb": size / 1e9}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", default="cff5617")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    old = Path(tempfile.mkdtemp(prefix="bench-build-old-"))
    subprocess.run(["git", "worktree", "add", "--detach", str(old), args.baseline], cwd=REPO, check=True, capture_output=True)
    results: dict[str, list[dict[str, float]]] = {"baseline": [], "this": []}
    try:
        for i in range(args.rounds):
            for name, checkout in (("baseline", old), ("this", REPO)) if i % 2 == 0 else (("this", REPO), ("baseline", old)):
                results[name].append(build(checkout))
                print(name, {k: round(v, 2) for k, v in results[name][-1].items()}, flush=True)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=REPO, capture_output=True)
    med = {n: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for n, rs in results.items()}
    out = {
        "baseline_rev": args.baseline,
        "rounds": results,
        "median": med,
        "ratio_this_over_baseline": {k: med["this"][k] / med["baseline"][k] for k in med["this"]},
    }
    print(json.dumps(out["median"], indent=1))
    print("this / baseline:", {k: round(v, 3) for k, v in out["ratio_this_over_baseline"].items()})
    dest = REPO / "benchmarks" / "results" / "bench_build_disk.json"
    dest.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
