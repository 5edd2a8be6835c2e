"""Benchmark: `reproexec data verify` against a parallel coreutils sha256sum pipeline.

    python benchmarks/bench_verify.py [--small 20000] [--large 4] [--large-mb 256] [--repeats 5]

Creates two datasets in a temp folder (seeded random content): many small files (2–8 KB, in 100
class folders, like an image folder) and a few large ones. Snapshots each with the real CLI, then
times, alternating run by run so drift hits both equally:

    reproexec data verify DIR                 (subprocess, exactly as a user runs it)
    find DIR -type f ! -name manifest.json ! -name SHA256SUMS -print0 |
        xargs -0 -P$(nproc) -n N sha256sum >/dev/null

with N = files / nproc, at most 256, so the pipeline uses every core on a few large files too
(with one `sha256sum` for all 4 large files it would hash them one after another).

and prints the median wall time of each and their ratio (reproexec / pipeline; ≤ 1.0 means no
slower), plus the ratio of min times and of CPU time (user + system, children included), which a
busy shared machine disturbs less than wall time. Both read warm page cache (each runs once before
timing); dropping caches needs root and a quiet machine, and would measure the disk rather than the
tools. Two start-up costs are timed for reference: `python -c pass` (the interpreter, paid by every
verify) and `reproexec --version` (the Typer CLI, which `data verify` skips: see
reproexec/cli/verify.py). Ratios, not absolute times, are the result: machines are noisy.

Bytecode: reproexec runs with PYTHONDONTWRITEBYTECODE removed from its environment, as an installed
reproexec has its .pyc files; with the variable set, an editable install recompiles its ~18 modules
on every start (~20 ms of each run). `--no-pyc` keeps the variable as it is, for comparisons with
runs taken that way.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def reproexec_exe() -> str:
    here = Path(sys.executable).parent / "reproexec"
    return str(here) if here.exists() else (shutil.which("reproexec") or "reproexec")


def make_small(root: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    for i in range(n):
        d = root / f"class{i % 100:03d}"
        if i < 100:
            d.mkdir(parents=True)
        (d / f"{i:06d}.bin").write_bytes(rng.randbytes(rng.randint(2048, 8192)))


def make_large(root: Path, n: int, mb: int, seed: int) -> None:
    rng = random.Random(seed)
    root.mkdir(parents=True)
    block = 1 << 20
    for i in range(n):
        with open(root / f"shard{i:02d}.bin", "wb") as f:
            for _ in range(mb):
                f.write(rng.randbytes(block))


def timed(cmd: list[str] | str, shell: bool = False) -> float:
    return timed_cpu(cmd, shell)[0]


ENV: dict[str, str] | None = None  # the environment reproexec runs in (None: inherited)


def timed_cpu(cmd: list[str] | str, shell: bool = False) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command and all its children, user + system)."""
    import resource

    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, shell=shell, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=None if shell else ENV)
    dt = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"command failed ({r.returncode}): {cmd}\n{r.stderr.decode(errors='replace')}")
    return dt, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def bench(name: str, root: Path, repeats: int) -> dict[str, float]:
    exe = reproexec_exe()
    ours = [exe, "data", "verify", str(root)]
    nproc = os.cpu_count() or 1
    n_files = sum(1 for p in root.rglob("*") if p.is_file()) - 2  # less manifest.json and SHA256SUMS
    per_call = max(1, min(256, -(-n_files // nproc)))
    pipeline = (
        f"find {shlex_quote(str(root))} -type f ! -name manifest.json ! -name SHA256SUMS -print0 "
        f"| xargs -0 -P{nproc} -n {per_call} sha256sum >/dev/null"
    )
    timed(ours)  # warm the page cache and the .pyc files
    timed(pipeline, shell=True)
    m_ours, m_pipe = [], []
    for i in range(repeats):
        # alternate which goes first so periodic noise does not favour one side
        if i % 2 == 0:
            m_ours.append(timed_cpu(ours))
            m_pipe.append(timed_cpu(pipeline, shell=True))
        else:
            m_pipe.append(timed_cpu(pipeline, shell=True))
            m_ours.append(timed_cpu(ours))
    med = statistics.median
    res = {
        "reproexec_median_s": med(w for w, _ in m_ours),
        "pipeline_median_s": med(w for w, _ in m_pipe),
        "reproexec_min_s": min(w for w, _ in m_ours),
        "pipeline_min_s": min(w for w, _ in m_pipe),
        "reproexec_cpu_s": med(c for _, c in m_ours),
        "pipeline_cpu_s": med(c for _, c in m_pipe),
    }
    res["ratio_median"] = res["reproexec_median_s"] / res["pipeline_median_s"]
    res["ratio_min"] = res["reproexec_min_s"] / res["pipeline_min_s"]
    res["ratio_cpu"] = res["reproexec_cpu_s"] / res["pipeline_cpu_s"]
    print(
        f"{name:<26} wall: reproexec {res['reproexec_median_s']:6.3f} s (min {res['reproexec_min_s']:.3f})  "
        f"pipeline {res['pipeline_median_s']:6.3f} s (min {res['pipeline_min_s']:.3f})  "
        f"ratio {res['ratio_median']:.2f} (min/min {res['ratio_min']:.2f})   "
        f"cpu: {res['reproexec_cpu_s']:.3f} vs {res['pipeline_cpu_s']:.3f} s, ratio {res['ratio_cpu']:.2f}   "
        f"(pipeline: xargs -n {per_call})",
        flush=True,
    )
    return res


def shlex_quote(s: str) -> str:
    import shlex

    return shlex.quote(s)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", type=int, default=20000, help="number of 2–8 KB files (0 to skip)")
    ap.add_argument("--large", type=int, default=4, help="number of large files (0 to skip)")
    ap.add_argument("--large-mb", type=int, default=256, help="size of each large file in MiB")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dir", default=None, help="where to create the temp datasets (default: system temp)")
    ap.add_argument("--keep", action="store_true", help="keep the datasets")
    ap.add_argument(
        "--no-pyc", action="store_true", help="keep PYTHONDONTWRITEBYTECODE as set (see the module docstring)"
    )
    args = ap.parse_args()
    global ENV
    if not args.no_pyc and "PYTHONDONTWRITEBYTECODE" in os.environ:
        ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        print("PYTHONDONTWRITEBYTECODE removed for reproexec (--no-pyc keeps it)", flush=True)

    base = Path(tempfile.mkdtemp(prefix="reproexec-bench-", dir=args.dir))
    exe = reproexec_exe()
    try:
        print(f"cpus {os.cpu_count()}, python {sys.version.split()[0]}, datasets in {base}", flush=True)
        interp = statistics.median(timed([sys.executable, "-c", "pass"]) for _ in range(5))
        startup = statistics.median(timed([exe, "--version"]) for _ in range(5))
        print(f"{'python -c pass':<26} {interp:7.3f} s  (paid by every reproexec command)", flush=True)
        print(f"{'reproexec --version':<26} {startup:7.3f} s  (Typer CLI start; `data verify` skips it)", flush=True)
        sets = []
        if args.small:
            t = time.perf_counter()
            make_small(base / "small", args.small, args.seed)
            sets.append((f"small: {args.small} x 2-8 KB", base / "small"))
            print(f"  made {args.small} small files in {time.perf_counter() - t:.1f} s", flush=True)
        if args.large:
            t = time.perf_counter()
            make_large(base / "large", args.large, args.large_mb, args.seed + 1)
            sets.append((f"large: {args.large} x {args.large_mb} MiB", base / "large"))
            print(f"  made {args.large} large files in {time.perf_counter() - t:.1f} s", flush=True)
        for name, root in sets:
            t = timed([exe, "data", "snapshot", str(root)])
            print(f"  snapshot {root.name}: {t:.2f} s", flush=True)
        for name, root in sets:
            bench(name, root, args.repeats)
    finally:
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
