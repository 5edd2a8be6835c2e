"""The trainer in-process: run-folder layout, events, strict-mode refusal, relaxed mode, CIFAR-10."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from trainkit import current_capability, make_config

from reproexec.errors import RunError
from reproexec.runtime.datasets import SeededImageDataset, load_dataset
from reproexec.runtime.model import state_dict_sha256
from reproexec.runtime.trainer import evaluate, make_eval_loader, run_training


def here(**over):
    """A config for this (already started) process: its CPU capability, or check_cpu_capability refuses."""
    det = {"cpu_capability": current_capability(), **over.pop("determinism", {})}
    return make_config(determinism=det, **over)


def with_arch(cfg, arch: str):
    """`cfg` with a model the config's list does not know (registered by a test): the trainer's own path."""
    return cfg.model_copy(update={"model": cfg.model.model_copy(update={"arch": arch})})


def test_run_folder_layout_and_events(digits, tmp_path):
    events = []
    out = tmp_path / "run"
    summary = run_training(here(), digits, out, emit=events.append)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == [
        "checkpoints/best.pt",
        "checkpoints/checkpoints.json",
        "checkpoints/last.pt",
        "classes.json",
        "config.json",
        "confusion_matrix.csv",
        "confusion_matrix.png",
        "curves.png",
        "determinism.json",
        "environment.json",
        "metrics/epochs.csv",
        "metrics/epochs.jsonl",
        "metrics/steps.csv",
        "metrics/steps.jsonl",
        "predictions.json",
        "predictions.png",
        "summary.json",
        "timing.json",
        "train.log",
    ]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("epoch") == 2
    step_events = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in step_events] == [4, 7, 8, 12, 14]  # every log_every=4 steps, plus each epoch's end
    assert set(step_events[0]) == {"event", "step", "total_steps", "epoch", "epochs", "loss", "lr", "elapsed_s"}
    assert step_events[-1]["total_steps"] == 14

    steps = [json.loads(line) for line in (out / "metrics/steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == list(range(1, 15)) and steps[7]["epoch"] == 2
    assert summary["loss_sum_first5"] == sum(s["loss"] for s in steps[:5])
    assert summary["steps"] == 14 and summary["status"] == "completed"
    assert (out / "metrics/steps.csv").read_text().splitlines()[0] == "step,epoch,loss,lr"

    ckpts = json.loads((out / "checkpoints/checkpoints.json").read_text())
    for name in ("best.pt", "last.pt"):
        assert hashlib.sha256((out / "checkpoints" / name).read_bytes()).hexdigest() == ckpts[name]["sha256"]
    last = torch.load(out / "checkpoints/last.pt", weights_only=True)
    assert set(last) >= {"model", "optimizer", "scheduler", "epoch", "config", "selection_metric", "selection_value"}
    assert state_dict_sha256(last["model"]) == summary["weights_sha256"]
    assert last["config"]["name"] == "tiny" and last["selection_metric"] == "val_acc"

    det = json.loads((out / "determinism.json").read_text())
    assert det["mode"] == "strict" and det["use_deterministic_algorithms"] is True
    assert det["cudnn_benchmark"] is False and det["intra_op_threads"] == 1
    env = json.loads((out / "environment.json").read_text())
    assert env["torch"]["version"] == torch.__version__ and "flags" in env["cpu"]
    assert json.loads((out / "classes.json").read_text())["classes"][3] == "3"
    assert len(json.loads((out / "predictions.json").read_text())) == 8
    assert b"Software" not in (out / "curves.png").read_bytes()
    # The trainer restores the process's torch flags.
    assert not torch.are_deterministic_algorithms_enabled()


def _register_nondeterministic_model():
    from torchvision.models._api import BUILTIN_MODELS

    class HistNet(torch.nn.Module):
        """Uses an op that torch flags as having no deterministic implementation."""

        def __init__(self, num_classes: int):
            super().__init__()
            self.fc = torch.nn.Linear(3 * 16 * 16, num_classes)

        def forward(self, x):
            torch.histc(x.detach().to("meta"), bins=4)  # torch's own strict-mode check raises here
            return self.fc(x.flatten(1))

    BUILTIN_MODELS["histnet_test"] = lambda weights=None, num_classes=10: HistNet(num_classes)
    return BUILTIN_MODELS


def test_strict_mode_refuses_an_op_without_deterministic_implementation(digits, tmp_path):
    registry = _register_nondeterministic_model()
    try:
        with pytest.raises(RunError) as info:
            run_training(with_arch(here(), "histnet_test"), digits, tmp_path / "run")
        relaxed = run_training(
            with_arch(here(determinism={"mode": "relaxed"}), "histnet_test"), digits, tmp_path / "relaxed"
        )
    finally:
        registry.pop("histnet_test")
    assert info.value.message == (
        "model 'histnet_test' on cpu uses _histc_cuda with floating point input, which has no deterministic "
        "implementation; determinism.mode 'strict' refuses to run it"
    )
    assert "determinism.mode: relaxed" in info.value.hint
    assert not (tmp_path / "run/summary.json").exists()
    assert json.loads((tmp_path / "run/error.json").read_text())["status"] == "failed"
    assert (tmp_path / "run/metrics/steps.jsonl.partial").exists()  # never renamed: visibly incomplete
    # relaxed: runs, and says so
    assert relaxed["mode"] == "relaxed"
    det = json.loads((tmp_path / "relaxed/determinism.json").read_text())
    assert det["use_deterministic_algorithms"] is False and det["cudnn_benchmark"] is True


def test_cifar10_training(cifar, tmp_path):
    cfg = here(
        data={"format": "cifar10", "subset": None},
        augment={"resize": None, "random_crop": {"size": [32, 32], "padding": 4}},
        train={"max_steps": 6, "batch_size": 16},
        model={"arch": "squeezenet1_1"},
    )
    s = run_training(cfg, cifar, tmp_path / "run")
    assert s["steps"] == 6 and 0.0 <= s["final"]["val_acc"] <= 1.0
    assert json.loads((tmp_path / "run/classes.json").read_text())["classes"][0] == "class0"
    pred = json.loads((tmp_path / "run/predictions.json").read_text())
    assert pred[0]["id"].startswith("cifar-10-batches-py/test_batch#")


def test_in_process_flags_do_not_leak(digits, tmp_path):
    torch.set_num_threads(2)
    run_training(here(determinism={"threads": 1}), digits, tmp_path / "run")
    assert torch.get_num_threads() == 2


def test_evaluate_reads_val_in_order_and_leaves_the_global_generator_alone(digits):
    # Iterating a DataLoader draws a base seed; from the global generator it would shift dropout in
    # the next epoch (that changed the weights of a 3-epoch mobilenet_v3_small run).
    cfg = make_config()
    ds = SeededImageDataset(load_dataset(cfg, digits).val, cfg, train=False)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 10))
    torch.manual_seed(0)
    before = torch.get_rng_state()
    ev = evaluate(
        model, torch.nn.CrossEntropyLoss(), make_eval_loader(ds, 32), torch.device("cpu"), 10, keep=range(len(ds))
    )
    assert torch.equal(torch.get_rng_state(), before)
    assert [r["index"] for r in ev["kept"]] == list(range(len(ds)))
    assert sum(map(sum, ev["confusion"])) == len(ds)
