"""The model: a torchvision architecture by name, optional local weights pinned by sha256."""

from __future__ import annotations

import difflib
import hashlib
from pathlib import Path
from typing import Any

import torch

from reproexec.config import Config
from reproexec.errors import ConfigError, RunError
from reproexec.fsutil import sha256_file


def state_dict_sha256(state: dict[str, Any]) -> str:
    """Canonical hash of a state_dict: keys sorted, each key, dtype, shape and raw bytes.

    Independent of how the file was serialized, so two runs agree exactly when their tensors do.
    """
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key]
        if not isinstance(t, torch.Tensor):
            h.update(f"{key}|{t!r}\n".encode())
            continue
        t = t.detach().to("cpu").contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def classification_archs() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def build_model(config: Config, weights_path: Path | None = None) -> torch.nn.Module:
    """Instantiate config.model.arch with random init (seeded by the caller); load pinned weights if any.

    Never downloads: torchvision is asked for weights=None and local weights are verified first.
    """
    import torchvision

    m = config.model
    try:
        builder = torchvision.models.get_model_builder(m.arch)
    except ValueError:
        near = difflib.get_close_matches(m.arch, classification_archs(), n=3)
        hint = f"did you mean {', '.join(near)}? " if near else ""
        raise ConfigError(
            f"model.arch = {m.arch!r} is not a torchvision model",
            f"{hint}`python -c 'import torchvision; print(torchvision.models.list_models())'` lists them",
        ) from None
    kwargs: dict[str, Any] = {"weights": None, "num_classes": m.num_classes}
    if m.arch in ("googlenet", "inception_v3"):
        kwargs["aux_logits"] = False  # the aux heads return tuples; one logits tensor keeps the loop simple
        kwargs["init_weights"] = True
    model = builder(**kwargs)
    if m.weights is not None:
        load_pinned_weights(model, weights_path or Path(m.weights.path), m.weights.sha256)
    return model


def load_pinned_weights(model: torch.nn.Module, path: Path, sha256: str) -> None:
    """Verify the file's sha256 before torch reads a byte of it; then load tensors only."""
    if not path.is_file():
        raise RunError(f"model.weights.path {path} does not exist", "pass the weights file (--weights) or fix the path")
    actual = sha256_file(path)
    if actual != sha256:
        raise RunError(
            f"model.weights: {path} has sha256 {actual}, but the config pins {sha256}",
            "use the pinned file, or update model.weights.sha256 if the new file is intended",
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for bad or unsafe files
        raise RunError(f"model.weights: cannot load {path}: {e}", "save a plain state_dict with torch.save") from None
    state = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise RunError(f"model.weights: {path} holds no state_dict", "save model.state_dict() with torch.save")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[:3]
        raise RunError(
            f"model.weights: {path} does not fit {type(model).__name__} with "
            f"num_classes={getattr(model, 'num_classes', '?')}: {' '.join(first)}",
            "use weights saved from the same model.arch and model.num_classes",
        ) from None
