"""What checking a run costs a reviewer: `reproexec verify` on the demo's bundle against `sha256sum -c`
of the same files, the floor any check of those bytes pays.

    python benchmarks/bench_attest.py [--run RUN_FOLDER] [--repeats 5] [-o results.json]

Without --run, makes a signing key in a private $XDG_CONFIG_HOME (`reproexec keys init`) and
trains the demo once with it (`reproexec run examples/digits/config.yaml`, image present), so the
signature is checked too. In one command, alternating: `reproexec verify FOLDER` and
`reproexec verify BUNDLE --key PUB` (re-hash every file, rebuild the statement, check the records
and the signature; the bundle is first unpacked privately), `sha256sum -c` over the same files
(their sha256s from run.json), and `tar xzf` of the bundle (what unpacking alone costs). Medians;
the ratios to `sha256sum -c` are the figures.
"""

from __future__ import annotations

import argparse
import json
import os
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
    env = {**os.environ, "XDG_CONFIG_HOME": str(work / "config")}
    if run_dir is None:
        timed([CLI, "keys", "init"], cwd=REPO, env=env)
        timed([CLI, "data", "demo", str(work / "digits-v1")], cwd=REPO)
        cfg = (
            (REPO / "examples/digits/config.yaml").read_text().replace("../../data/digits-v1", str(work / "digits-v1"))
        )
        (work / "config.yaml").write_text(
            cfg.replace("lockfile: requirements.lock", f"lockfile: {REPO}/examples/digits/requirements.lock")
        )
        timed([CLI, "run", str(work / "config.yaml"), "--runs-dir", str(work / "runs")], cwd=REPO, env=env)
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
    signed = (folder / "attestation.pub").exists()
    key = ["--key", str(folder / "attestation.pub")] if signed else []
    times: dict[str, list[float]] = {"verify_folder_s": [], "verify_bundle_s": [], "sha256sum_c_s": [], "untar_s": []}
    for i in range(args.repeats):
        times["verify_folder_s"].append(timed([CLI, "verify", str(run_dir), *key], cwd=REPO).wall_s)
        times["verify_bundle_s"].append(timed([CLI, "verify", str(bundle), *key], cwd=REPO).wall_s)
        times["sha256sum_c_s"].append(
            timed(["sha256sum", "--quiet", "-c", str(work / "SHA256SUMS")], cwd=folder).wall_s
        )
        scratch = work / f"untar-{i}"
        scratch.mkdir()
        times["untar_s"].append(timed(["tar", "xzf", str(bundle), "-C", str(scratch)]).wall_s)
    m = {k: median(v) for k, v in times.items()}
    out = {
        "run": record["run_id"],
        "files": len(record["artifacts"]),
        "bytes": size,
        "bundle_bytes": bundle.stat().st_size,
        "signed": signed,
        **m,
        "folder_ratio": m["verify_folder_s"] / m["sha256sum_c_s"],
        "bundle_ratio": m["verify_bundle_s"] / m["sha256sum_c_s"],
        "untar_plus_sums_s": m["untar_s"] + m["sha256sum_c_s"],
    }
    print(json.dumps(out, indent=2))
    if args.output:
        write_json(args.output, out)


if __name__ == "__main__":
    main()
