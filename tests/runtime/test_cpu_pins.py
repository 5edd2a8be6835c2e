"""CPU math pinned below ATen: whatever the host exports, a run trains with the same MKL branch,
oneDNN ISA and ATen level, and so the same weights (the cross-machine promise, measured on one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from trainkit import REPO, make_config, read_run, run_fresh

from reproexec.errors import RunError
from reproexec.runtime import seeding
from reproexec.runtime.seeding import check_cpu_math, cpu_math_environment, pinned_environment

# What another machine or another user's shell may export; each would change the weights unpinned.
HOST_VARIATIONS = {
    "host default": ({}, None),
    "ONEDNN_MAX_CPU_ISA=SSE41": ({"ONEDNN_MAX_CPU_ISA": "SSE41"}, None),
    "DNNL_MAX_CPU_ISA=AVX, MKL_ENABLE_INSTRUCTIONS=SSE4_2": (
        {"DNNL_MAX_CPU_ISA": "AVX", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
        None,
    ),
    "MKL_CBWR=AVX2,STRICT": ({"MKL_CBWR": "AVX2,STRICT"}, None),
    "ATEN_CPU_CAPABILITY=default": ({"ATEN_CPU_CAPABILITY": "default"}, None),
    "one CPU": ({}, {0}),
}


@pytest.mark.unit
def test_every_cpu_math_library_is_pinned_to_a_value():
    env = pinned_environment(make_config(seed=7, determinism={"threads": 2, "cpu_capability": "avx512"}))
    assert env == {
        "ATEN_CPU_CAPABILITY": "avx512",
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
        "DNNL_MAX_CPU_ISA": "AVX512_CORE",
        "MKL_CBWR": "COMPATIBLE",
        "MKL_DYNAMIC": "FALSE",
        "MKL_NUM_THREADS": "2",
        "OMP_DYNAMIC": "FALSE",
        "OMP_NUM_THREADS": "2",
        "ONEDNN_CPU_ISA_HINTS": "NO_HINTS",
        "ONEDNN_DEFAULT_FPMATH_MODE": "STRICT",
        "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
        "PYTHONHASHSEED": "7",
    }
    levels = {c: cpu_math_environment(make_config(determinism={"cpu_capability": c})) for c in ("default", "avx2")}
    assert levels["avx2"]["ONEDNN_MAX_CPU_ISA"] == "AVX2" and levels["default"]["ONEDNN_MAX_CPU_ISA"] == "SSE41"
    assert all(v for lv in levels.values() for v in lv.values())  # a value each: the host's never leaks through


@pytest.mark.unit
def test_a_cpu_without_the_pinned_level_is_refused_up_front(monkeypatch):
    monkeypatch.setattr(seeding, "cpu_flags", lambda: {"sse2", "sse4_1", "avx"})
    with pytest.raises(RunError) as e:
        check_cpu_math(make_config(determinism={"cpu_capability": "avx2"}))
    assert e.value.message == (
        "determinism.cpu_capability = 'avx2', but this CPU lacks avx2, fma: ATen, oneDNN and MKL cannot run at that level here"
    )
    assert "determinism.cpu_capability" in e.value.hint


@pytest.mark.unit
def test_a_library_that_ignores_its_pin_is_refused(monkeypatch):
    cfg = make_config()
    for k, v in cpu_math_environment(cfg).items():
        monkeypatch.setenv(k, v)  # a pinned process...
    state = {
        "mkl": {"available": True, "cnr_branch": "AUTO"},  # ...where MKL still chose its own branch
        "onednn": {"available": True, "isa": "Intel AVX2"},
    }
    monkeypatch.setattr(seeding, "cpu_math_state", lambda: state)
    monkeypatch.setattr(seeding, "cpu_flags", lambda: {"avx2", "fma"})
    with pytest.raises(RunError) as e:
        check_cpu_math(cfg)
    assert e.value.details == ["MKL runs CNR branch AUTO, pinned COMPATIBLE (MKL_CBWR)"]


@pytest.mark.unit
def test_the_levels_are_read_back_from_the_libraries_themselves():
    """Not the environment echoed back: what MKL and oneDNN report while they compute."""
    code = (
        "import json; from reproexec.runtime.seeding import cpu_math_state; "
        "print(json.dumps([cpu_math_state(), cpu_math_state()]))"
    )  # twice: oneDNN's header comes once
    env = {**os.environ, "PYTHONPATH": str(REPO), "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "SSE41"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    first, second = json.loads(out)  # and nothing else reached stdout
    assert first == second
    assert first["mkl"]["cnr_branch"] == "COMPATIBLE"
    assert first["onednn"]["isa"] == "Intel SSE4.1" and first["onednn"]["conv_kernel"] == "jit:sse41"
    assert first["blas"] == "mkl"


def test_host_variables_and_cpu_count_do_not_change_the_weights(digits, tmp_path):
    cfg = make_config(train={"max_steps": 4, "epochs": 1}, data={"subset": 128})
    results = {}
    for name, (host, cpus) in HOST_VARIATIONS.items():
        if cpus and not hasattr(os, "sched_setaffinity"):
            continue
        out = tmp_path / name.replace("=", "_").replace(" ", "_").replace(",", "")
        proc = run_fresh(cfg, digits, out, cpus=cpus, env=host)  # the host's values, over this process's
        assert proc.returncode == 0, f"{name}: {proc.stderr[-2000:]}"
        det = json.loads((out / "determinism.json").read_text())
        assert det["cpu_math"]["mkl"]["cnr_branch"] == "COMPATIBLE", name
        assert det["cpu_math"]["onednn"]["isa"] == "Intel AVX2", name
        assert det["cpu_capability_actual"] == "AVX2", name
        assert det["cpu_math_pins"] == cpu_math_environment(cfg), name
        results[name] = read_run(out)["summary"]["weights_sha256"]
    assert len(set(results.values())) == 1, json.dumps(results, indent=1)
