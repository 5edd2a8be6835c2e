"""CUDA determinism (run on a GPU machine: `pytest -m gpu`; REPROEXEC_REQUIRE_GPU=1 turns skips into failures)."""

from __future__ import annotations

import pytest
from conftest import make_config, read_run, require_cuda, run_fresh

pytestmark = [pytest.mark.gpu, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _cuda():
    require_cuda()


def test_cuda_runs_are_bit_identical(digits, tmp_path):
    cfg = make_config(train={"max_steps": 20})
    results = []
    for name in ("a", "b"):
        proc = run_fresh(cfg, digits, tmp_path / name, extra=["--device", "cuda"])
        assert proc.returncode == 0, proc.stderr[-3000:]
        results.append(read_run(tmp_path / name))
    assert results[0]["losses"] == results[1]["losses"]
    assert results[0]["summary"]["weights_sha256"] == results[1]["summary"]["weights_sha256"]


def test_cuda_num_workers_do_not_change_results(digits, tmp_path):
    cfgs = {"w0": make_config(), "w2": make_config(train={"num_workers": 2})}
    res = {}
    for name, cfg in cfgs.items():
        proc = run_fresh(cfg, digits, tmp_path / name, extra=["--device", "cuda"])
        assert proc.returncode == 0, proc.stderr[-3000:]
        res[name] = read_run(tmp_path / name)
    assert res["w0"]["losses"] == res["w2"]["losses"]


def test_cuda_strict_refuses_nondeterministic_backward(digits, tmp_path):
    # AlexNet's AdaptiveAvgPool2d((6, 6)) has no deterministic CUDA backward.
    cfg = make_config(model={"arch": "alexnet"}, augment={"resize": [64, 64], "random_crop": None})
    proc = run_fresh(cfg, digits, tmp_path / "run", extra=["--device", "cuda"])
    assert proc.returncode == 7, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "model 'alexnet' on cuda uses adaptive_avg_pool2d_backward_cuda" in proc.stderr
