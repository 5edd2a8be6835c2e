"""The standing cross-machine check: a short demo run in the real container must end with the
weights sha256 committed in tests/golden/demo_weights.json, on every x86-64 machine with AVX2 and FMA
(this project's machines differ: some have AVX-512, some do not). A different hash here means some
CPU math under torch is not pinned (reproexec.runtime.seeding), or the image's libraries changed."""

from __future__ import annotations

import json

from runfixtures import REPO, write_config

from reproexec.config import load_config
from reproexec.runs.execute import execute_run
from reproexec.runs.prepare import RunOptions

GOLDEN = json.loads((REPO / "tests" / "golden" / "demo_weights.json").read_text())


def test_short_demo_run_gives_the_golden_weights(docker_engine, base_image, demo_snapshot, tmp_path):
    cfg = load_config(write_config(tmp_path, demo_snapshot, **GOLDEN["config"]))
    run = execute_run(cfg, RunOptions(runs_dir=tmp_path / "runs"), engine=docker_engine)
    assert run.status == "succeeded", run.reason
    det = json.loads((run.run_dir / "determinism.json").read_text())
    env = json.loads((run.run_dir / "environment.json").read_text())
    where = (
        f"{env['cpu'].get('model_name')} ({' '.join(f for f in env['cpu'].get('flags', []) if f.startswith('avx'))})"
    )
    assert (det["cpu_capability_actual"], det["cpu_math"]["onednn"]["isa"], det["cpu_math"]["mkl"]["cnr_branch"]) == (
        "AVX2",
        "Intel AVX2",
        "COMPATIBLE",
    ), where
    assert run.summary["weights_sha256"] == GOLDEN["weights_sha256"], (
        f"on {where}: weights {run.summary['weights_sha256']}, golden {GOLDEN['weights_sha256']} "
        f"(measured on {GOLDEN['measured_on']})"
    )
