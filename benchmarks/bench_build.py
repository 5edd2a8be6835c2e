"""Build benchmark: a cache-hit `reproexec build` against `python -c pass`, as a ratio.

    python benchmarks/bench_build.py [--config examples/digits/config.yaml] [--repeats 7] [--cold]

Both commands run alternately in the same loop, so machine noise hits both alike. `--cold` also
times one cold build (image removed, Docker build cache pruned, wheels kept) — minutes, not seconds.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="examples/digits/config.yaml")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--cold", action="store_true")
    args = ap.parse_args()
    build = [sys.executable, "-m", "reproexec", "build", args.config]
    if args.cold:
        tag = subprocess.run([*build, "--dry-run"], check=True, capture_output=True, text=True).stdout.split()[-1]
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
        subprocess.run(["docker", "image", "prune", "-f"], capture_output=True)
        subprocess.run(["docker", "builder", "prune", "-af"], capture_output=True)
        print(f"cold build (wheels cached): {timed(build):.1f} s")
    timed(build)  # make sure the image exists
    hit, base, cli = [], [], []
    for _ in range(args.repeats):
        hit.append(timed(build))
        base.append(timed([sys.executable, "-c", "pass"]))
        cli.append(timed([sys.executable, "-m", "reproexec", "--version"]))
    h, b, c = statistics.median(hit), statistics.median(base), statistics.median(cli)
    print(f"cache-hit build: median {h:.3f} s; python -c pass: median {b:.3f} s; ratio {h / b:.1f}x")
    print(f"reproexec --version: median {c:.3f} s; cache-hit build / CLI start: {h / c:.1f}x")


if __name__ == "__main__":
    main()
