"""What the seeding start-up hook adds to a bring-your-own entrypoint (issue 11; goal < 0.2 s).

    python benchmarks/bench_seedhook.py [--image reproexec-env:TAG] [--rounds 7]

In the run image, in one command, alternating arm by arm each round:
  bare    `python train.py` with the run's variables but the hook off (REPROEXEC_SEED_HOOK=0)
  hook    the same with the hook on PYTHONPATH (what `reproexec run` does for a `python` entrypoint)
  empty   the same two arms for a script that imports nothing: the hook's floor
train.py imports torch and NumPy and runs 3 SGD steps of a small convnet (what a script does first).
Each arm is one `docker run --rm --network none` (the container start is in both arms alike).
Reported: the median difference (hook − bare) in seconds, and the ratio.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from common import median, timed

SCRIPT = """
import time
t0 = time.perf_counter()
import numpy as np
import torch
model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 30 * 30, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for _ in range(3):
    x = torch.randn(16, 3, 32, 32); y = torch.randint(0, 10, (16,))
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
print(float(loss), np.random.rand())
"""


def newest_env_image() -> str:
    out = subprocess.run(
        ["docker", "image", "ls", "reproexec-env", "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if not out:
        sys.exit("no reproexec-env image: run `reproexec build examples/digits/config.yaml` first")
    return out[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    image = args.image or newest_env_image()
    hook_dir = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            image,
            "python",
            "-c",
            "import reproexec.runtime.seedhook as m, os; print(os.path.join(os.path.dirname(m.__file__), 'hook'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    work = Path(tempfile.mkdtemp(prefix="bench-seedhook-"))
    work.chmod(0o755)  # the image runs as uid 10001
    (work / "train.py").write_text(SCRIPT)
    (work / "empty.py").write_text("pass\n")
    for f in ("train.py", "empty.py"):
        (work / f).chmod(0o644)
    (work / "run").mkdir(mode=0o777)
    (work / "run").chmod(0o777)

    def once(script: str, hook: bool) -> float:
        env = [
            "-e",
            "REPROEXEC_SEED=1337",
            "-e",
            "REPROEXEC_RUN_DIR=/w/run",
            "-e",
            "REPROEXEC_DETERMINISM=strict",
            "-e",
            f"REPROEXEC_SEED_HOOK={'1' if hook else '0'}",
        ]
        if hook:
            env += ["-e", f"PYTHONPATH={hook_dir}"]
        return timed(
            ["docker", "run", "--rm", "--network", "none", "-v", f"{work}:/w", *env, image, "python", f"/w/{script}"]
        ).wall_s

    once("train.py", True)  # warm-up (page cache), not counted
    res: dict[tuple[str, bool], list[float]] = {(s, h): [] for s in ("train.py", "empty.py") for h in (False, True)}
    for _ in range(args.rounds):
        for key in res:
            res[key].append(once(*key))
    print(f"image {image}, {args.rounds} rounds, medians")
    for script in ("train.py", "empty.py"):
        bare, hook = res[(script, False)], res[(script, True)]
        diffs = [h - b for h, b in zip(hook, bare)]
        print(
            f"  {script:9s} bare {median(bare):.3f} s  hook {median(hook):.3f} s  "
            f"added {median(diffs):+.3f} s (rounds {min(diffs):+.3f}…{max(diffs):+.3f})  "
            f"ratio {median(hook) / median(bare):.3f}×"
        )


if __name__ == "__main__":
    main()
