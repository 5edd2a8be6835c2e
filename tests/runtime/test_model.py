"""Model construction and pinned weights (no training)."""

from __future__ import annotations

import hashlib

import pytest
import torch
from trainkit import make_config

from reproexec.errors import ConfigError, RunError
from reproexec.runtime.model import build_model, state_dict_sha256


def _weights(tmp_path):
    torch.manual_seed(0)
    state = build_model(make_config(model={"arch": "squeezenet1_1"})).state_dict()
    path = tmp_path / "w.pt"
    torch.save(state, path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest(), state


def test_unknown_arch_is_refused_with_suggestion():
    # by the config, before anything runs
    with pytest.raises(ConfigError) as info:
        make_config(model={"arch": "resnet19"})
    assert info.value.details == [
        "model.arch = 'resnet19': not a torchvision classification model; did you mean "
        "resnet18, resnet152, resnet101? (`reproexec config schema` lists them)"
    ]
    # and by the trainer, for a config.json that did not come through validation
    cfg = make_config()
    with pytest.raises(ConfigError) as info:
        build_model(cfg.model_copy(update={"model": cfg.model.model_copy(update={"arch": "resnet19"})}))
    assert info.value.message == "model.arch = 'resnet19' is not a torchvision model"
    assert "did you mean resnet18" in info.value.hint


def test_pinned_weights_load(tmp_path):
    path, sha, state = _weights(tmp_path)
    cfg = make_config(model={"arch": "squeezenet1_1", "weights": {"path": str(path), "sha256": sha}})
    torch.manual_seed(1)
    model = build_model(cfg)
    assert state_dict_sha256(model.state_dict()) == state_dict_sha256(state)


def test_wrong_sha256_is_refused_before_loading(tmp_path):
    path, sha, _ = _weights(tmp_path)
    wrong = "0" * 64
    cfg = make_config(model={"arch": "squeezenet1_1", "weights": {"path": str(path), "sha256": wrong}})
    with pytest.raises(RunError) as info:
        build_model(cfg)
    assert info.value.message == f"model.weights: {path} has sha256 {sha}, but the config pins {wrong}"


def test_weights_for_another_head_are_refused(tmp_path):
    path, sha, _ = _weights(tmp_path)
    cfg = make_config(model={"arch": "squeezenet1_1", "num_classes": 5, "weights": {"path": str(path), "sha256": sha}})
    with pytest.raises(RunError, match="does not fit"):
        build_model(cfg)


def test_state_dict_hash_is_canonical():
    a = {"b": torch.arange(3.0), "a": torch.zeros(2, dtype=torch.int64)}
    b = {"a": torch.zeros(2, dtype=torch.int64), "b": torch.arange(3.0)}
    assert state_dict_sha256(a) == state_dict_sha256(b)
    assert state_dict_sha256(a) != state_dict_sha256({**a, "b": torch.arange(3.0).double()})
    assert state_dict_sha256(a) != state_dict_sha256({**a, "b": torch.tensor([0.0, 1.0, 2.0000002])})
