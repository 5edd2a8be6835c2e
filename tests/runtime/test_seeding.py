"""Seeds, pinned environment, and the strict-mode error translation (no training)."""

from __future__ import annotations

import pytest
from trainkit import current_capability, make_config

from reproexec.errors import RunError
from reproexec.runtime.seeding import (
    check_cpu_capability,
    derive_seed,
    nondeterministic_op_error,
)

# torch's own text (aten/src/ATen/Context.cpp, alertNotDeterministic) for a CUDA-only op.
CUDA_MESSAGE = (
    "adaptive_avg_pool2d_backward_cuda does not have a deterministic implementation, but you set "
    "'torch.use_deterministic_algorithms(True)'. You can turn off determinism just for this operation, "
    "or you can use the 'warn_only=True' option, if that's acceptable for your application. You can also "
    "file an issue at https://github.com/pytorch/pytorch/issues to help us prioritize adding deterministic "
    "support for this operation."
)


def test_derive_seed_is_stable_and_purpose_separated():
    # Fixed values, computed once: the derivation must never change silently (it would change every
    # rerun), and it is a sha256 of the parts, so they hold on every machine.
    assert derive_seed(1337, "augment", 1, 0) == 2180391729384558479
    assert derive_seed(1337, "shuffle", 1) == 4174335985023138544
    assert len({derive_seed(1337, "augment", e, i) for e in range(3) for i in range(100)}) == 300
    assert derive_seed(1337, "shuffle", 1) != derive_seed(1338, "shuffle", 1)
    assert 0 <= derive_seed(0, "x") < 2**63


def test_cuda_nondeterministic_message_names_op_model_and_way_out():
    err = nondeterministic_op_error(RuntimeError(CUDA_MESSAGE), "alexnet", "cuda")
    assert isinstance(err, RunError)
    assert err.message == (
        "model 'alexnet' on cuda uses adaptive_avg_pool2d_backward_cuda, which has no deterministic "
        "implementation; determinism.mode 'strict' refuses to run it"
    )
    assert "determinism.mode: relaxed" in err.hint


def test_other_runtime_errors_are_not_translated():
    assert nondeterministic_op_error(RuntimeError("CUDA out of memory"), "resnet18", "cuda") is None
    assert nondeterministic_op_error(ValueError(CUDA_MESSAGE), "resnet18", "cuda") is None


def test_real_torch_alert_is_translated():
    import torch
    from torch._prims_common import alert_not_deterministic

    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        with pytest.raises(RuntimeError) as info:
            alert_not_deterministic("grid_sampler_2d_backward_cuda")
    finally:
        torch.use_deterministic_algorithms(prev)
    err = nondeterministic_op_error(info.value, "mymodel", "cuda:0")
    assert err is not None and "uses grid_sampler_2d_backward_cuda," in err.message


def test_capability_mismatch_in_a_started_process_says_start_fresh(monkeypatch):
    other = "default" if current_capability() != "default" else "avx2"
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    with pytest.raises(RunError) as info:
        check_cpu_capability(make_config(determinism={"cpu_capability": other}))
    assert "torch was imported in this process" in info.value.message
    assert f"ATEN_CPU_CAPABILITY={other}" in info.value.hint


def test_capability_the_cpu_lacks_is_named(monkeypatch):

    if current_capability() == "avx512":
        pytest.skip("this CPU has AVX512; the fallback case needs a CPU without it")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx512")
    with pytest.raises(RunError, match="this CPU cannot run it"):
        check_cpu_capability(make_config(determinism={"cpu_capability": "avx512"}))


def test_matching_capability_passes():
    import torch

    assert check_cpu_capability(make_config(determinism={"cpu_capability": current_capability()})) == (
        torch.backends.cpu.get_cpu_capability()
    )
