"""What "the same numbers on another machine" costs: bundle sizes and the rerun on a fresh machine B.

    python benchmarks/bench_machine_b.py [--with-image]

In one command, on this host:
  A        `reproexec run examples/digits/config.yaml` (the demo; image present): its wall time
  export   `reproexec export ID --with-base` (and, with --with-image, `--with-image` to a .tar):
           the bundle sizes and their ratio (goal: --with-base ≤ 1/20 of the image bundle)
  B        a second, empty `dockerd` (tests/machineb.py) with its own empty REPROEXEC_CACHE and run
           store: `reproexec rerun bundle --data …`: base imported, wheels fetched again from the
           package index and checked, the run image rebuilt to the recorded tag, the demo trained.
           Its wall time as a ratio to A's, and the verdict.
  --newer-release  B reruns with another build of reproexec: a git worktree of this checkout with
           one more commit to reproexec's source (what an upgrade looks like), so B rebuilds the
           recorded image from the run's recipe, not from its own source.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import CLI, REPO, timed

sys.path.insert(0, str(REPO / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--with-image", action="store_true", help="also measure the --with-image bundle (GBs)")
    ap.add_argument("--newer-release", action="store_true", help="B reruns with another build of reproexec")
    args = ap.parse_args()
    from machineb import start_second_engine

    work = Path(tempfile.mkdtemp(prefix="bench-machine-b-"))
    runs_a = work / "runs-a"
    a_wall = timed([CLI, "run", "examples/digits/config.yaml", "--runs-dir", str(runs_a)], cwd=REPO).wall_s
    (run_dir,) = [p for p in runs_a.iterdir() if not p.name.startswith(".")]
    out = {"a_wall_s": a_wall, "run_id": run_dir.name}
    base_bundle = work / "with-base.tar.gz"
    out["export_with_base_s"] = timed(
        [CLI, "export", run_dir.name, "-o", str(base_bundle), "--with-base", "--runs-dir", str(runs_a)], cwd=REPO
    ).wall_s
    out["with_base_bytes"] = base_bundle.stat().st_size
    if args.with_image:
        image_bundle = work / "with-image.tar"
        out["export_with_image_s"] = timed(
            [CLI, "export", run_dir.name, "-o", str(image_bundle), "--with-image", "--runs-dir", str(runs_a)], cwd=REPO
        ).wall_s
        out["with_image_bytes"] = image_bundle.stat().st_size
        out["base_over_image"] = out["with_base_bytes"] / out["with_image_bytes"]
        image_bundle.unlink()
    b = start_second_engine()
    cli_b, env = [CLI], {"DOCKER_HOST": b.host, "REPROEXEC_CACHE": str(work / "cache-b")}
    if args.newer_release:
        release = newer_release(work / "newer")
        cli_b, env["PYTHONPATH"] = [sys.executable, "-c", "from reproexec.cli import main; main()"], str(release)
        out["b_release"] = subprocess.run(
            [*cli_b, "--version"], capture_output=True, text=True, env={**os.environ, **env}
        ).stdout.strip()
    try:
        rerun = timed(
            [
                *cli_b,
                "rerun",
                str(base_bundle),
                "--data",
                str(REPO / "data" / "digits-v1"),
                "--runs-dir",
                str(work / "runs-b"),
            ],
            cwd=REPO,
            env={**os.environ, **env},
        )
        out["b_rerun_s"] = rerun.wall_s
        out["b_verdict_line"] = next((line for line in rerun.stdout.splitlines() if "rerun of" in line), "")
    finally:
        b.stop()
        if args.newer_release:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(work / "newer")], capture_output=True
            )
    out["b_over_a"] = out["b_rerun_s"] / a_wall
    print(json.dumps(out, indent=2))


def newer_release(where: Path) -> Path:
    """This checkout (with its uncommitted changes to tracked files) plus one commit to reproexec's source."""
    state = subprocess.run(
        ["git", "-C", str(REPO), "stash", "create"], capture_output=True, text=True, check=True
    ).stdout.strip()
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(where), state or "HEAD"],
        check=True,
        capture_output=True,
    )
    trainer = where / "reproexec" / "runtime" / "trainer.py"
    trainer.write_text(trainer.read_text() + "\n# a newer release\n")
    subprocess.run(
        ["git", "-C", str(where), "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qam", "newer"], check=True
    )
    return where


if __name__ == "__main__":
    main()
