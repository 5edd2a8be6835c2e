"""runs/arch.py and the arm64 halves of runtime/seeding.py: the numerics class, its probe, and the
checks that use it (no engine, no emulation: tests/emulated runs the real thing)."""

from __future__ import annotations

import pytest
from fakes import FakeEngine

from reproexec.config import validate_config
from reproexec.errors import ConfigError, EngineError, RunError
from reproexec.runs.arch import RunPlatform, check_same_class, probe_platform
from reproexec.runs.envdiff import EnvView, diff_env
from reproexec.runtime.seeding import arch_of, cpu_math_environment, numerics_class, pinned_environment


def test_machines_map_to_docker_platforms_and_sve_lengths_to_classes():
    assert [arch_of(m) for m in ("x86_64", "AMD64", "aarch64", "arm64", "ppc64le")] == [
        "amd64",
        "amd64",
        "arm64",
        "arm64",
        None,
    ]
    # each SVE vector length is a class of its own (measured: tests/golden/arm64_weights.json)
    assert [numerics_class("arm64", bits) for bits in (0, 128, 256, 512)] == [
        "arm64-neon",
        "arm64-sve128",
        "arm64-sve256",
        "arm64-sve512",
    ]
    assert numerics_class("amd64", 0) == "amd64"


def test_arm64_pins_threads_and_strict_f32_math_but_no_x86_isa_or_mkl():
    cfg = validate_config({"name": "t", "data": {"snapshot": "."}, "determinism": {"cpu_capability": "default"}})
    arm = pinned_environment(cfg, "arm64")
    assert arm["ATEN_CPU_CAPABILITY"] == "default" and arm["OMP_NUM_THREADS"] == "1"
    assert arm["ONEDNN_DEFAULT_FPMATH_MODE"] == "STRICT"
    assert not {k for k in arm if k.startswith(("MKL_", "DNNL_")) or k == "ONEDNN_MAX_CPU_ISA"}
    assert cpu_math_environment(cfg, "amd64")["ONEDNN_MAX_CPU_ISA"] == "SSE41"  # amd64 unchanged


def test_the_class_is_probed_in_the_run_image_under_the_same_emulation(monkeypatch):
    engine = FakeEngine()
    engine.numerics_probe = "aarch64 256"
    monkeypatch.setenv("REPROEXEC_QEMU_CPU", "max,sve-default-vector-length=32")
    here = probe_platform(engine, "img", "arm64", emulated=True)
    assert here == RunPlatform("arm64", "arm64-sve256", "max,sve-default-vector-length=32")
    assert here.record()["emulated"] == {"by": "qemu-user", "cpu": "max,sve-default-vector-length=32"}
    assert here.container_env() == {"QEMU_CPU": "max,sve-default-vector-length=32"}
    monkeypatch.delenv("REPROEXEC_QEMU_CPU")
    engine.numerics_probe = "aarch64 0"
    assert probe_platform(engine, "img", "arm64", emulated=True).emulated_cpu == "neoverse-n1"  # the default
    assert probe_platform(engine, "img", "amd64", emulated=False) == RunPlatform("amd64", "amd64")

    engine.numerics_probe = "exec /usr/bin/python3: exec format error"
    with pytest.raises(EngineError, match="qemu-user is not registered with binfmt_misc"):
        probe_platform(engine, "img", "arm64", emulated=True)


def test_a_recorded_class_other_than_this_machines_is_refused_with_both_named():
    here = RunPlatform("arm64", "arm64-sve256", "max,sve-default-vector-length=32")
    check_same_class({"arch": "arm64", "numerics_class": "arm64-sve256"}, here)
    check_same_class(None, here)  # a run made before classes were recorded
    with pytest.raises(RunError) as e:
        check_same_class({"arch": "arm64", "numerics_class": "arm64-neon"}, here)
    assert "numerics class arm64-neon; this machine's is arm64-sve256 (emulated: QEMU_CPU=max,sve-" in e.value.message
    assert "REPROEXEC_QEMU_CPU" in e.value.hint


def test_env_diff_names_the_numerics_class_as_what_changes_numbers_and_emulation_as_what_does_not():
    a = EnvView("a", {"run.arch": "arm64", "run.numerics_class": "arm64-neon", "run.emulated": "qemu-user neoverse-n1"})
    b = EnvView("b", {"run.arch": "arm64", "run.numerics_class": "arm64-sve256", "run.emulated": "no"})
    diffs = {d.key: d for d in diff_env(a, b)}
    assert diffs["run.numerics_class"].numerics and "SVE vector length" in diffs["run.numerics_class"].why
    assert not diffs["run.emulated"].numerics


def test_an_arm64_config_must_run_at_atens_default_level():
    from reproexec.runtime.seeding import check_arch_config

    cfg = validate_config({"name": "t", "data": {"snapshot": "."}})
    with pytest.raises(ConfigError, match="'avx2' is an x86-64 level, but env.arch arm64 runs linux/arm64"):
        check_arch_config(cfg, "arm64", "env.arch arm64")
    check_arch_config(cfg, "amd64", "env.arch amd64")


def test_the_local_runtime_on_macos_is_a_class_of_its_own(monkeypatch):
    import sys

    monkeypatch.setattr(sys, "platform", "darwin")
    # (sve_vector_length is None off arm64 Linux: this machine, like macOS)
    assert probe_platform(None, None, "arm64", emulated=False) == RunPlatform("arm64", "arm64-neon-macos")


def test_a_run_recorded_before_platforms_were_is_amd64_for_env_diff():
    from reproexec.runs.envdiff import view_from_parts

    old = view_from_parts("old", None, {"image": {"tag": "t"}})  # run.json of reproexec before arm64
    new = view_from_parts("new", None, {"image": {"tag": "t"}, "platform": RunPlatform("amd64", "amd64").record()})
    assert diff_env(old, new) == []
