"""Benchmark: `reproexec data verify` against a parallel coreutils sha256sum pipeline.

    python benchmarks/bench_verify.py [--small 200000] [--large 4] [--large-mb 256] [--repeats 5]
                                      [--dir D] [--variant NAME=PYTHONPATH ...] [--snapshot] [--per-file]

The goal (issue 13): on a snapshot of 200,000 files of 2–8 KB plus 4 files of 256 MiB, `data
verify` takes at most 1.1× the time of

    find DIR -type f ! -name manifest.json ! -name SHA256SUMS -print0 |
        xargs -0 -P$(nproc) -n N sha256sum >/dev/null

and at most 0.5× on the 4 large files alone (hashlib hashes with the CPU's SHA instructions;
coreutils' sha256sum on Debian 12 does not). N = files / nproc, at most 256, so the pipeline uses
every core on the few large files too.

Two datasets are made in a temp folder (or --dir, where they are kept and reused by the next run
with the same sizes): `mixed` (the small files in 200 class folders, and the large files) and
`large` (the same large files, hard links, so the bytes are on disk and in the page cache once).
Each is snapshotted with the CLI when made (`--snapshot` times `data snapshot` like verify).

Then, alternating run by run (which goes first alternates as well) so that drift on a shared
machine hits every side alike, each reproexec variant and the pipeline run `--repeats` times. A
variant is a PYTHONPATH to import reproexec from (default: as installed / inherited), so today's
code and an older checkout (`git archive REV reproexec | tar -x -C /tmp/old`) are compared in one
command. Printed per dataset: the median wall time of each side and its range, and the ratio
variant / pipeline as the median of the per-round ratios with its range; CPU time (user + system,
children included) for reference. Both sides read warm page cache (each runs once before
timing): dropping caches needs a quiet machine and would measure the disk, not the tools.

Bytecode: reproexec runs with PYTHONDONTWRITEBYTECODE removed from its environment, as an
installed reproexec has its .pyc files.

Figures measured here (2 cores, shared and busy; kept out of the code they justify):
- 20,000 small files: a serial hashing loop took 0.19 s, a thread pool 0.21–0.24 s (hashlib
  drops the GIL only for buffers over 2 KiB, and the Python around each file holds it), a
  process pool 0.13 s. Hence hashing.hash_files' process pool.
- `--per-file`: hashing.hash_file 23.4 µs of CPU per 2–8 KB file, fsutil.sha256_file 70.1 µs
  (hashlib.file_digest allocates a 256 KiB buffer per call): +9 s of CPU on 200,000 files,
  against 11 s for the whole verify. Hence the data box reads files itself.
- Where a verify of the mixed set spends its time in the calling process (CPU seconds):
  json.loads 0.35, the entry checks 1.36, the manifest id 0.63, the walk 0.59, then the
  workers hash (8.2 s of CPU between them). That serial part is what bounds the speed-up on
  a machine with many more cores than this one.
- Typer's start-up (typer, click, pydantic) is ~0.1 s of any command; at this size it no longer
  matters (and the gate that matters runs inside `reproexec run`, already in the Typer process).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import CLI_MODULE, median, timed


def make_datasets(base: Path, n_small: int, n_large: int, large_mb: int, seed: int) -> None:
    rng = random.Random(seed)
    mixed, large = base / "mixed", base / "large"
    for i in range(n_small):
        d = mixed / f"class{i % 200:03d}"
        if i < 200:
            d.mkdir(parents=True)
        (d / f"{i:06d}.bin").write_bytes(rng.randbytes(rng.randint(2048, 8192)))
    large.mkdir(parents=True)
    (mixed / "shards").mkdir(parents=True)
    for i in range(n_large):
        with open(large / f"shard{i:02d}.bin", "wb") as f:
            for _ in range(large_mb):
                f.write(rng.randbytes(1 << 20))
        os.link(large / f"shard{i:02d}.bin", mixed / "shards" / f"shard{i:02d}.bin")


def pipeline(root: Path) -> str:
    nproc = os.cpu_count() or 1
    n_files = sum(len(files) for _, _, files in os.walk(root)) - 2  # less manifest.json and SHA256SUMS
    per_call = max(1, min(256, -(-n_files // nproc)))
    return (
        f"find {shlex.quote(str(root))} -type f ! -name manifest.json ! -name SHA256SUMS -print0 "
        f"| xargs -0 -P{nproc} -n {per_call} sha256sum >/dev/null"
    )


def bench(name: str, verb: str, root: Path, variants: dict[str, dict[str, str]], repeats: int) -> None:
    sides: dict[str, tuple[list[str] | str, dict[str, str] | None]] = {
        v: (CLI_MODULE + ["data", verb, str(root)], env) for v, env in variants.items()
    }
    sides["pipeline"] = (pipeline(root), None)
    for cmd, env in sides.values():  # warm the page cache and the .pyc files
        timed(cmd, env=env)
    times: dict[str, list[tuple[float, float]]] = {s: [] for s in sides}
    order = list(sides)
    for i in range(repeats):
        for s in order if i % 2 == 0 else order[::-1]:
            cmd, env = sides[s]
            r = timed(cmd, env=env)
            times[s].append((r.wall_s, r.cpu_s))
    pipe = [w for w, _ in times["pipeline"]]
    print(f"{verb} {name}: pipeline `{sides['pipeline'][0].split('| ')[1].split(' >')[0]}`", flush=True)
    for s in order:
        wall = [w for w, _ in times[s]]
        cpu = median(c for _, c in times[s])
        line = f"  {s:<12} wall {median(wall):6.2f} s ({min(wall):.2f}–{max(wall):.2f})  cpu {cpu:6.2f} s"
        if s != "pipeline":
            ratios = [a / b for a, b in zip(wall, pipe)]
            line += f"   ratio {median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})"
        print(line, flush=True)


def per_file_cost(root: Path, n: int = 20_000, rounds: int = 3) -> None:
    """CPU time per small file: the data box's hash_file against fsutil.sha256_file (hashlib.file_digest)."""
    from reproexec.data.hashing import hash_file
    from reproexec.fsutil import sha256_file

    rels = sorted(str(p.relative_to(root)) for p in root.glob("class*/*.bin"))[:n]
    sides = {
        "hash_file": lambda rel: hash_file(str(root), rel),
        "sha256_file": lambda rel: sha256_file(root / rel, follow_symlinks=False),
    }
    cost: dict[str, list[float]] = {s: [] for s in sides}
    for _ in range(rounds):
        for name, fn in sides.items():
            t = time.process_time()
            for rel in rels:
                fn(rel)
            cost[name].append((time.process_time() - t) / len(rels) * 1e6)
    for name, us in cost.items():
        print(
            f"  {name:<12} {median(us):5.1f} µs CPU per file ({min(us):.1f}–{max(us):.1f}), {len(rels):,} files of 2-8 KB"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", type=int, default=200_000, help="number of 2–8 KB files")
    ap.add_argument("--large", type=int, default=4, help="number of large files")
    ap.add_argument("--large-mb", type=int, default=256, help="size of each large file in MiB")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--snapshot", action="store_true", help="time `data snapshot` of the mixed set too")
    ap.add_argument(
        "--per-file", action="store_true", help="only the CPU per small file: hash_file vs fsutil.sha256_file"
    )
    ap.add_argument("--dir", default=None, help="keep the datasets here and reuse them next time")
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=PYTHONPATH",
        help="a reproexec to time, imported from PYTHONPATH (repeatable; default: the inherited one)",
    )
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    variants = {"reproexec": env}
    if args.variant:
        variants = {}
        for spec in args.variant:
            name, _, path = spec.partition("=")
            variants[name] = {
                **env,
                "PYTHONPATH": os.pathsep.join(str(Path(p).resolve()) for p in path.split(os.pathsep)),
            }

    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="reproexec-bench-"))
    params = {"small": args.small, "large": args.large, "large_mb": args.large_mb, "seed": args.seed}
    stamp = base / "params.json"
    try:
        print(f"cpus {os.cpu_count()}, python {sys.version.split()[0]}, datasets in {base}", flush=True)
        if not (stamp.is_file() and json.loads(stamp.read_text()) == params):
            shutil.rmtree(base / "mixed", ignore_errors=True)
            shutil.rmtree(base / "large", ignore_errors=True)
            t = time.perf_counter()
            make_datasets(base, args.small, args.large, args.large_mb, args.seed)
            print(f"  made the datasets in {time.perf_counter() - t:.0f} s", flush=True)
            first = next(iter(variants.values()))
            for root in (base / "mixed", base / "large"):
                wall = timed(CLI_MODULE + ["data", "snapshot", str(root)], env=first).wall_s
                print(f"  snapshot {root.name}: {wall:.2f} s", flush=True)
            stamp.write_text(json.dumps(params))
        mb = args.large * args.large_mb
        if args.per_file:  # in this process, with the reproexec its PYTHONPATH gives
            per_file_cost(base / "mixed")
            return
        mixed = f"mixed: {args.small:,} x 2-8 KB + {args.large} x {args.large_mb} MiB"
        bench(mixed, "verify", base / "mixed", variants, args.repeats)
        bench(
            f"large: {args.large} x {args.large_mb} MiB ({mb:,} MiB)", "verify", base / "large", variants, args.repeats
        )
        if args.snapshot:  # rewrites manifest.json and SHA256SUMS with the same content
            bench(mixed, "snapshot", base / "mixed", variants, args.repeats)
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
