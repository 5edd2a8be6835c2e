"""What a cold build of the demo image costs in disk and time: this checkout against another revision.

    python benchmarks/bench_build_disk.py [--baseline REV] [--rounds 1]
    python benchmarks/bench_build_disk.py --scenario lock-change [--baseline ad8645a]

lock-change: the demo image is built (not counted), then the demo's lockfile with one small pin
changed (PyYAML 6.0.4 -> 6.0.1) is built, and that second build is measured, download included:
before it, the changed wheel and the changed lockfile's wheel index are taken out of the cache, so
each checkout fetches what it would fetch for a user (ad8645a: the whole lockfile again; now: the
one changed pin). The default baseline ad8645a keyed cached wheels by the whole lockfile and
installed them in one environment layer.

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
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from common import CLI_MODULE, REPO, median, timed, write_json

CONFIG = "examples/digits/config.yaml"


def forget_images() -> None:
    """No reproexec image and no untagged image: no layer a build could reuse (the base stays)."""
    refs = subprocess.run(
        ["docker", "images", "-q", "--filter", "reference=reproexec-env", "--filter", "reference=reproexec-code"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if refs:
        subprocess.run(["docker", "rmi", "-f", *set(refs)], capture_output=True)
    subprocess.run(["docker", "image", "prune", "-f"], capture_output=True, check=True)


def build(checkout: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    cmd = [*CLI_MODULE, "build", CONFIG]
    tag = subprocess.run(
        [*cmd, "--dry-run"], cwd=checkout, env=env, check=True, capture_output=True, text=True
    ).stdout.split()[-1]
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
    wall = timed(cmd, cwd=checkout, env=env).wall_s
    done.set()
    sampler.join()
    end = shutil.disk_usage(disk).free
    size = int(
        subprocess.run(
            ["docker", "image", "inspect", tag, "--format", "{{.Size}}"], check=True, capture_output=True, text=True
        ).stdout
    )
    forget_images()
    return {"wall_s": wall, "peak_gb": (start - low) / 1e9, "kept_gb": (start - end) / 1e9, "image_gb": size / 1e9}


# The changed pin: PyYAML 6.0.1's wheel for the demo image's Python (cp311, manylinux x86_64).
PYYAML_601 = "pyyaml==6.0.1 \\\n    --hash=sha256:d2b04aac4d386b172d5b9692e2d2da8de7bfb6c387fa4f801fbf6fb2e6ba4673\n"


def variant_config() -> Path:
    """The demo config beside a copy of its lockfile whose pyyaml pin is 6.0.1."""
    folder = Path(tempfile.mkdtemp(prefix="bench-lock-change-"))
    text = (REPO / "examples/digits/config.yaml").read_text()
    (folder / "config.yaml").write_text(text.replace("../../data/", str(REPO / "data") + "/"))
    lines, out, skip = (REPO / "examples/digits/requirements.lock").read_text().splitlines(keepends=True), [], False
    for line in lines:
        if line.startswith("pyyaml=="):
            out.append(PYYAML_601)
            skip = True
            continue
        if skip and line.startswith("    "):
            continue
        skip = False
        out.append(line)
    (folder / "requirements.lock").write_text("".join(out))
    return folder / "config.yaml"


def forget_changed_wheel(lock: Path) -> None:
    """Take the changed pin's wheel and the changed lockfile's index out of the wheel cache."""
    import hashlib

    cache = Path(
        os.environ.get("REPROEXEC_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "reproexec"
    )
    digest = PYYAML_601.split("sha256:")[1].strip()
    shutil.rmtree(cache / "wheels" / digest[:2] / digest, ignore_errors=True)
    lock_sha = hashlib.sha256(lock.read_bytes()).hexdigest()
    for index in (cache / "resolved").glob("*.json"):
        if not index.name.startswith("choices-") and index.stem in {
            hashlib.sha256((lock_sha + key).encode()).hexdigest() for key in ("cp311-x86_64-glibc2.36",)
        }:
            index.unlink()


def lock_change(checkout: Path, config: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    cmd = [*CLI_MODULE, "build"]
    forget_images()
    subprocess.run([*cmd, CONFIG], cwd=checkout, env=env, check=True, capture_output=True)
    forget_changed_wheel(config.with_name("requirements.lock"))
    disk = "/var/lib/docker" if Path("/var/lib/docker").exists() else "/"
    start = shutil.disk_usage(disk).free
    r = timed([*cmd, str(config)], cwd=checkout, env=env)
    end = shutil.disk_usage(disk).free
    fetched = [ln for ln in (r.stdout + r.stderr).splitlines() if "downloading" in ln]
    forget_images()
    return {
        "wall_s": r.wall_s,
        "kept_gb": (start - end) / 1e9,
        "downloaded_wheels": float(fetched[0].split()[1]) if fetched else 0.0,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--scenario", choices=["cold", "lock-change"], default="cold")
    args = ap.parse_args()
    args.baseline = args.baseline or ("cff5617" if args.scenario == "cold" else "ad8645a")
    config = variant_config() if args.scenario == "lock-change" else None
    old = Path(tempfile.mkdtemp(prefix="bench-build-old-"))
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(old), args.baseline], cwd=REPO, check=True, capture_output=True
    )
    results: dict[str, list[dict[str, float]]] = {"baseline": [], "this": []}
    try:
        for i in range(args.rounds):
            for name, checkout in (
                (("baseline", old), ("this", REPO)) if i % 2 == 0 else (("this", REPO), ("baseline", old))
            ):
                results[name].append(build(checkout) if config is None else lock_change(checkout, config))
                print(name, {k: round(v, 2) for k, v in results[name][-1].items()}, flush=True)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=REPO, capture_output=True)
    med = {n: {k: median(r[k] for r in rs) for k in rs[0]} for n, rs in results.items()}
    out = {
        "baseline_rev": args.baseline,
        "rounds": results,
        "median": med,
        "ratio_this_over_baseline": {k: med["this"][k] / med["baseline"][k] for k in med["this"]},
    }
    print(json.dumps(out["median"], indent=1))
    print("this / baseline:", {k: round(v, 3) for k, v in out["ratio_this_over_baseline"].items()})
    dest = REPO / "benchmarks" / "results" / ("bench_build_disk.json" if config is None else "bench_lock_change.json")
    write_json(dest, out, indent=1)


if __name__ == "__main__":
    main()
