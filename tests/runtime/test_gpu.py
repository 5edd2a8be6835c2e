"""CUDA determinism (run on a GPU machine: `pytest -m gpu`; REPROEXEC_REQUIRE_GPU=1 turns skips into failures)."""

from __future__ import annotations

import pytest
from trainkit import make_config, read_run, require_cuda, run_fresh

pytestmark = pytest.mark.gpu


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


CUDA_SCRIPT = """
import os, torch, torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset
x, y = torch.randn(512, 3, 16, 16), torch.randint(0, 10, (512,))          # unseeded on purpose
loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True, num_workers=2)
model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 14 * 14, 10)).cuda()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for xb, yb in loader:
    opt.zero_grad()
    nn.functional.cross_entropy(model(xb.cuda()), yb.cuda()).backward()
    opt.step()
torch.save(model.state_dict(), os.path.join(os.environ["REPROEXEC_RUN_DIR"], "model.pt"))
"""


def test_an_unseeded_cuda_script_is_seeded_by_the_start_up_hook(tmp_path):
    """Bring-your-own on CUDA (local runtime): the hook seeds torch's CUDA generators too, so an
    unseeded script with DataLoader workers gives byte-identical weights twice."""
    import yaml

    from reproexec.config import load_config
    from reproexec.data.demo import write_digits_demo
    from reproexec.runs.compare import compare_runs
    from reproexec.runs.execute import execute_run
    from reproexec.runs.prepare import RunOptions

    snapshot = write_digits_demo(tmp_path / "digits-v1").root
    (tmp_path / "train.py").write_text(CUDA_SCRIPT)
    cfg = {"name": "cuda-byo", "data": {"snapshot": str(snapshot)}, "entrypoint": ["python", "train.py"]}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    loaded = load_config(tmp_path / "config.yaml")
    runs = [execute_run(loaded, RunOptions(runtime="local", runs_dir=tmp_path / "runs")) for _ in range(2)]
    assert [r.status for r in runs] == ["succeeded", "succeeded"], [r.reason for r in runs]
    a, b = ((r.run_dir / "model.pt").read_bytes() for r in runs)
    assert a == b
    assert compare_runs(runs[0].run_dir, runs[1].run_dir).verdict == "identical"
