"""Sweep benchmark: what the sweep machinery costs per cell, and what Slurm adds.

    python benchmarks/bench_sweep.py [--seeds 3] [--slurm] [--rounds 1]

Arms, in the same command, alternating round by round so machine noise hits each alike:
  run     one plain `reproexec run cell.yaml` per cell, one after another (the baseline)
  sweep   `reproexec sweep` of the same cells, local executor, in sequence
  slurm   (--slurm) the same sweep through Slurm, one job at a time (cpus_per_task = every CPU)
Every arm starts from an empty run store (nothing is reused) with the image already built, so
only the run-and-bookkeeping path is timed. Reported: seconds per cell and the ratios.

The cells are smoke-sized (4 steps of 16 images): most of a cell is the container start, torch's
import and the artifacts, which is exactly the fixed cost a sweep's overhead is measured against.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import yaml
from common import CLI_MODULE, REPO, timed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--slurm", action="store_true")
    args = ap.parse_args()
    from reproexec.data.demo import write_digits_demo

    root = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    snapshot = write_digits_demo(root / "digits-v1").root
    cfg = yaml.safe_load((REPO / "examples" / "digits" / "config.yaml").read_text())
    cfg["env"]["lockfile"] = str(REPO / "examples" / "digits" / "requirements.lock")
    cfg["data"]["snapshot"] = str(snapshot)
    cfg["train"].update(epochs=1, max_steps=4, batch_size=16, log_every=1)
    cfg["output"] = {"sample_predictions": 0}
    (root / "config.yaml").write_text(yaml.safe_dump(cfg))
    seeds = list(range(args.seeds))
    sweep = {
        "name": "bench",
        "base": "config.yaml",
        "seeds": seeds,
        "baseline": "base",
        "variants": {"base": {}},
        "slurm": {"cpus_per_task": os.cpu_count() or 1, "time": 30, "poll_s": 1},
    }
    (root / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    cells = []
    for s in seeds:  # the same configs the sweep's cells run
        path = root / f"cell-{s}.yaml"
        path.write_text(yaml.safe_dump({**cfg, "seed": s}))
        cells.append(path)
    cli = CLI_MODULE
    timed([*cli, "build", str(root / "config.yaml")])  # the image exists before any arm is timed

    times: dict[str, list[float]] = {"run": [], "sweep": [], "slurm": []}
    for i in range(args.rounds):
        store = root / f"round{i}"
        times["run"].append(
            sum(timed([*cli, "run", str(c), "--runs-dir", str(store / "runs-run")]).wall_s for c in cells)
        )
        times["sweep"].append(
            timed(
                [
                    *cli,
                    "sweep",
                    str(root / "sweep.yaml"),
                    "--runs-dir",
                    str(store / "runs-sweep"),
                    "--sweeps-dir",
                    str(store / "sweeps"),
                ]
            ).wall_s
        )
        if args.slurm:
            times["slurm"].append(
                timed(
                    [
                        *cli,
                        "sweep",
                        str(root / "sweep.yaml"),
                        "--executor",
                        "slurm",
                        "--runs-dir",
                        str(store / "runs-slurm"),
                        "--sweeps-dir",
                        str(store / "sweeps-slurm"),
                    ]
                ).wall_s
            )
    n = len(cells)
    run, sw = min(times["run"]) / n, min(times["sweep"]) / n
    print(f"cells: {n} per arm, rounds: {args.rounds} (best round shown)")
    print(f"plain `reproexec run`, per cell:  {run:6.2f} s")
    print(
        f"`reproexec sweep` (local), per cell: {sw:6.2f} s   ratio {sw / run:.3f} (overhead {100 * (sw / run - 1):+.1f} %)"
    )
    if args.slurm:
        sl = min(times["slurm"]) / n
        print(
            f"`reproexec sweep --executor slurm`, per cell: {sl:6.2f} s   {sl - sw:+.2f} s per cell vs local (ratio {sl / sw:.3f})"
        )
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
