"""What a run wrote is taken into its run folder as hostile input: nothing is followed, nothing
unsafe comes in, everything refused is named."""

import hashlib
import os
import stat

import pytest

from reproexec.runs.outputs import Limits, make_staging, remove_tree, take_outputs
from reproexec.runs.store import RECORDS

ME = (os.getuid(), os.getgid())


@pytest.fixture
def dirs(tmp_path):
    run_dir = tmp_path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    staging = make_staging(tmp_path / "runs" / ".staging" / "r1", ME)
    host = tmp_path / "host-secret"
    host.write_text("root's secret\n")
    os.chmod(host, 0o600)
    return staging, run_dir, host


def test_plain_outputs_move_in_with_plain_modes_and_their_hashes(dirs):
    staging, run_dir, _ = dirs
    (staging / "checkpoints").mkdir()
    (staging / "checkpoints" / "last.pt").write_bytes(b"weights")
    (staging / "tool.sh").write_text("#!/bin/sh\n")
    os.chmod(staging / "tool.sh", 0o777)
    (staging / ".hidden").write_text("x")
    intake = take_outputs(staging, run_dir, owner=ME, reserved=RECORDS)
    assert intake.files == {
        ".hidden": hashlib.sha256(b"x").hexdigest(),
        "checkpoints/last.pt": hashlib.sha256(b"weights").hexdigest(),
        "tool.sh": hashlib.sha256(b"#!/bin/sh\n").hexdigest(),
    }
    assert not intake.unsafe and intake.bytes == 7 + 10 + 1
    assert stat.S_IMODE((run_dir / "tool.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((run_dir / "checkpoints" / "last.pt").stat().st_mode) == 0o644
    assert (run_dir / "checkpoints" / "last.pt").read_bytes() == b"weights"


def test_links_planted_for_the_host_are_never_followed(dirs):
    staging, run_dir, host = dirs
    os.symlink(host, staging / f".run.json.{os.getpid()}.tmp")
    os.symlink(host, staging / "summary.json")
    os.symlink(host, staging / "config.yaml")
    os.symlink("/", staging / "rootdir")
    intake = take_outputs(staging, run_dir, owner=ME, reserved=RECORDS)
    assert sorted(link["path"] for link in intake.links) == sorted(
        [f".run.json.{os.getpid()}.tmp", "summary.json", "config.yaml", "rootdir"]
    )
    assert intake.links[0]["target"] in (str(host), "/")
    assert intake.refused == []  # links are named, never taken in, and do not fail a run
    assert list(run_dir.iterdir()) == []
    assert host.read_text() == "root's secret\n" and stat.S_IMODE(host.stat().st_mode) == 0o600


def test_setuid_hard_links_devices_records_and_odd_names_are_refused_and_named(dirs):
    staging, run_dir, _ = dirs
    (staging / "x").write_bytes(b"\x7fELF")
    os.chmod(staging / "x", 0o4755)
    (staging / "a").write_text("a")
    os.link(staging / "a", staging / "b")
    os.mkfifo(staging / "fifo")
    (staging / "run.json").write_text('{"status": "succeeded"}')
    (staging / "stdout.log").write_text("forged")
    (staging / "bad\nname").write_text("x")
    (staging / os.fsdecode(b"\xff.bin")).write_text("x")
    intake = take_outputs(staging, run_dir, owner=ME, reserved=RECORDS)
    why = {r["path"]: r["why"] for r in intake.refused}
    assert why == {
        "x": "setuid/setgid bit set",
        "a": "a hard link (2 names for one file)",
        "b": "a hard link (2 names for one file)",
        "fifo": "a device, fifo or socket",
        "run.json": "a reproexec record has this name",
        "stdout.log": "a reproexec record has this name",
        "bad\nname": "the name holds control characters",
        "\\udcff.bin": "the name is not UTF-8",
    }
    assert intake.unsafe and list(run_dir.iterdir()) == []
    remove_tree(staging)
    assert not staging.exists()  # the setuid file is gone with it


def test_limits_on_size_count_and_depth(dirs):
    staging, run_dir, _ = dirs
    (staging / "big.bin").write_bytes(b"y" * 11)
    (staging / "ok.bin").write_bytes(b"y" * 5)
    deep = staging
    for i in range(40):
        deep = deep / f"d{i}"
    deep.mkdir(parents=True)
    intake = take_outputs(
        staging, run_dir, owner=ME, reserved=RECORDS, limits=Limits(file_bytes=10, total_bytes=100, files=1000)
    )
    why = {r["path"]: r["why"] for r in intake.refused}
    assert why["big.bin"] == "11 bytes (limit 10 per file)"
    assert any(v == "folders nested more than 32 deep" for v in why.values())
    assert (run_dir / "ok.bin").is_file()
    many = take_outputs(staging, run_dir, owner=ME, reserved=RECORDS, limits=Limits(files=3))
    assert [r["why"] for r in many.refused][-1] == "more than 3 files and folders"
