"""Build benchmark: a cache-hit `reproexec build` against `python -c pass`, as a ratio.

    python benchmarks/bench_build.py [--config examples/digits/config.yaml] [--repeats 7] [--cold]

Both commands run alternately in the same loop, so machine noise hits both alike. `--cold` also
times one cold build (image removed, Docker build cache pruned, wheels kept) — minutes, not seconds.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from common import CLI_MODULE, median, timed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="examples/digits/config.yaml")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--cold", action="store_true")
    args = ap.parse_args()
    build = [*CLI_MODULE, "build", args.config]
    if args.cold:
        tag = subprocess.run([*build, "--dry-run"], check=True, capture_output=True, text=True).stdout.split()[-1]
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
        subprocess.run(["docker", "image", "prune", "-f"], capture_output=True)
        subprocess.run(["docker", "builder", "prune", "-af"], capture_output=True)
        print(f"cold build (wheels cached): {timed(build).wall_s:.1f} s")
    timed(build)  # make sure the image exists
    hit, base, cli = [], [], []
    for _ in range(args.repeats):
        hit.append(timed(build).wall_s)
        base.append(timed([sys.executable, "-c", "pass"]).wall_s)
        cli.append(timed([*CLI_MODULE, "--version"]).wall_s)
    h, b, c = median(hit), median(base), median(cli)
    print(f"cache-hit build: median {h:.3f} s; python -c pass: median {b:.3f} s; ratio {h / b:.1f}x")
    print(f"reproexec --version: median {c:.3f} s; cache-hit build / CLI start: {h / c:.1f}x")


if __name__ == "__main__":
    main()
