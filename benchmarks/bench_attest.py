"""What checking a run costs a reviewer: `reproexec verify` on the demo's bundle against `sha256sum -c`
of the same files, the floor any check of those bytes pays.

    python benchmarks/bench_attest.py [--run RUN_FOLDER] [--repeats 5] [-o results.json]

Without --run, trains the demo once (`reproexec run examples/digits/config.yaml`, image present).
In one command, alternating: `reproexec verify BUNDLE` (unpacks the bundle privately, re-hashes
every file, rebuilds the statement, checks the records and the signature) and `sha256sum -c` over
the same files unpacked (their sha256s from run.json). Medians; the ratio is the figure.
"""

from __future__ import annotations

import argparse
import json
import tarfile
import tempfile
from pathlib import Path

from common import CLI, REPO, median, timed, write_json


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, help="a run folder (default: train the demo once)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("-o", "--output", type=Path)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-attest-"))
    run_dir = args.run
    if run_dir is None:
        timed([CLI, "data", "demo", str(work / "digits-v1")], cwd=REPO)
        cfg = (
            (REPO / "examples/digits/config.yaml").read_text().replace("../../data/digits-v1", str(work / "digits-v1"))
        )
        (work / "config.yaml").write_text(
            cfg.replace("lockfile: requirements.lock", f"lockfile: {REPO}/examples/digits/requirements.lock")
        )
        timed([CLI, "run", str(work / "config.yaml"), "--runs-dir", str(work / "runs")], cwd=REPO)
        (run_dir,) = [p for p in (work / "runs").iterdir() if not p.name.startswith(".")]
    bundle = work / "run.tar.gz"
    timed([CLI, "export", str(run_dir), "-o", str(bundle)], cwd=REPO)
    plain = work / "unpacked"
    with tarfile.open(bundle) as tar:
        tar.extractall(plain, filter="data")
    (folder,) = list(plain.iterdir())
    record = json.loads((folder / "run.json").read_text())
    (work / "SHA256SUMS").write_text("".join(f"{sha}  {rel}\n" for rel, sha in sorted(record["artifacts"].items())))
    size = sum((folder / rel).stat().st_size for rel in record["artifacts"])
    verify, sums = [], []
    for _ in range(args.repeats):
        verify.append(timed([CLI, "verify", str(bundle)], cwd=REPO).wall_s)
        sums.append(timed(["sha256sum", "--quiet", "-c", str(work / "SHA256SUMS")], cwd=folder).wall_s)
    out = {
        "run": record["run_id"],
        "files": len(record["artifacts"]),
        "bytes": size,
        "bundle_bytes": bundle.stat().st_size,
        "signed": (folder / "attestation.pub").exists(),
        "verify_bundle_s": median(verify),
        "sha256sum_c_s": median(sums),
        "ratio": median(verify) / median(sums),
    }
    print(json.dumps(out, indent=2))
    if args.output:
        write_json(args.output, out)


if __name__ == "__main__":
    main()
