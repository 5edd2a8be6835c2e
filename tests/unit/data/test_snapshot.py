"""Snapshots: the manifest format and id, SHA256SUMS, excludes, refused entries, atomic writes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from datatrees import make_tree

from reproexec.data import hashing
from reproexec.data.manifest import DatasetManifest, FileEntry, load_manifest, snapshot
from reproexec.errors import DataError


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def test_snapshot_writes_sorted_manifest_with_posix_relpaths(tmp_path: Path) -> None:
    make_tree(tmp_path, {"b/2.txt": b"two", "a.txt": b"one", "b/1/x.bin": b"\x00" * 3000})
    result = snapshot(tmp_path)
    doc = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    assert doc == {
        "version": 1,
        "count": 3,
        "excludes": [],
        "files": [
            {"relpath": "a.txt", "bytes": 3, "sha256": sha(b"one")},
            {"relpath": "b/1/x.bin", "bytes": 3000, "sha256": sha(b"\x00" * 3000)},
            {"relpath": "b/2.txt", "bytes": 3, "sha256": sha(b"two")},
        ],
    }
    assert result.manifest_path == tmp_path / "manifest.json"
    assert result.sums_path == tmp_path / "SHA256SUMS"
    assert result.manifest_id == load_manifest(tmp_path / "manifest.json").manifest_id


def test_manifest_id_is_the_sha256_of_the_documented_canonical_form(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a.txt": b"one"})
    result = snapshot(tmp_path)
    canonical = '{"excludes":[],"files":[{"bytes":3,"relpath":"a.txt","sha256":"%s"}]}' % sha(b"one")
    assert result.manifest_id == hashlib.sha256(canonical.encode()).hexdigest()


def test_manifest_id_ignores_entry_order_and_formatting_but_counts_excludes() -> None:
    a, b = FileEntry("a", 1, "0" * 64), FileEntry("b", 2, "1" * 64)
    assert DatasetManifest((a, b)).manifest_id == DatasetManifest((b, a)).manifest_id
    assert DatasetManifest((a, b)).manifest_id != DatasetManifest((a, b), ("*.tmp",)).manifest_id
    assert DatasetManifest((a,), ("x", "y")).manifest_id == DatasetManifest((a,), ("y", "x", "x")).manifest_id


def test_resnapshot_leaves_out_its_own_files_and_keeps_the_id(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a.txt": b"one", "sub/b.txt": b"two"})
    first = snapshot(tmp_path)
    second = snapshot(tmp_path)
    assert first.manifest_id == second.manifest_id
    assert [f.relpath for f in second.manifest.files] == ["a.txt", "sub/b.txt"]
    # only at the top: a nested file called manifest.json is data
    (tmp_path / "sub" / "manifest.json").write_text("{}")
    assert "sub/manifest.json" in [f.relpath for f in snapshot(tmp_path).manifest.files]


def test_sha256sum_c_accepts_a_fresh_snapshot(tmp_path: Path) -> None:
    if shutil.which("sha256sum") is None:
        pytest.skip("coreutils sha256sum not installed")
    make_tree(tmp_path, {"a.txt": b"one", "dir with space/b.bin": os.urandom(5000), "é/ü.txt": b"x"})
    snapshot(tmp_path)
    run = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count(": OK") == 3
    (tmp_path / "a.txt").write_bytes(b"ONE")
    assert (
        subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=tmp_path, capture_output=True).returncode == 1
    )


def test_non_ascii_names_round_trip_exactly_nfc_and_nfd(tmp_path: Path) -> None:
    nfc, nfd = "caf\u00e9.txt", "cafe\u0301.txt"  # two different names on Linux
    make_tree(tmp_path, {nfc: b"nfc", nfd: b"nfd", "日本/猫.png": b"neko"})
    result = snapshot(tmp_path)
    text = (tmp_path / "manifest.json").read_text(encoding="utf-8")
    assert nfc in text and nfd in text and "日本/猫.png" in text  # stored as UTF-8, not \u escapes
    loaded = load_manifest(tmp_path / "manifest.json")
    assert {f.relpath for f in loaded.files} == {nfc, nfd, "日本/猫.png"}
    assert loaded.manifest_id == result.manifest_id
    from reproexec.data.manifest import verify_snapshot

    assert verify_snapshot(tmp_path).ok


def test_excludes_are_recorded_and_applied(tmp_path: Path) -> None:
    make_tree(
        tmp_path, {"a.png": b"a", "cache/x.bin": b"x", "sub/.DS_Store": b"junk", "sub/b.png": b"b", "sub/c.tmp": b"c"}
    )
    result = snapshot(tmp_path, excludes=[".DS_Store", "cache", "sub/*.tmp"])
    assert [f.relpath for f in result.manifest.files] == ["a.png", "sub/b.png"]
    doc = json.loads((tmp_path / "manifest.json").read_text())
    assert doc["excludes"] == [".DS_Store", "cache", "sub/*.tmp"]


def test_escaping_symlink_is_refused_naming_the_path(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a.txt": b"one"})
    (tmp_path / "evil").symlink_to("/etc/passwd")
    with pytest.raises(DataError) as exc:
        snapshot(tmp_path)
    assert exc.value.message == f"{tmp_path}: 1 entry is not plain readable files (a symlink leaves the snapshot)"
    assert exc.value.details == ["evil: symlink to /etc/passwd, outside the snapshot"]
    assert "replace symlinks with copies" in exc.value.hint
    assert not (tmp_path / "manifest.json").exists()


def test_symlink_inside_the_snapshot_is_refused_too(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a.txt": b"one"})
    (tmp_path / "link.txt").symlink_to("a.txt")
    (tmp_path / "linkdir").symlink_to(tmp_path)
    with pytest.raises(DataError) as exc:
        snapshot(tmp_path)
    assert exc.value.details == ["link.txt: symlink to a.txt", f"linkdir: symlink to {tmp_path}"]


def test_fifo_and_socket_are_refused_all_listed(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a.txt": b"one"})
    os.mkfifo(tmp_path / "pipe")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(tmp_path / "sock"))
    except OSError:  # path too long for AF_UNIX on some systems
        sock = None
    with pytest.raises(DataError) as exc:
        snapshot(tmp_path)
    expected = ["pipe: named pipe (fifo)"] + (["sock: socket"] if sock else [])
    assert exc.value.details == expected
    if sock:
        sock.close()


def test_excluded_fifo_is_fine(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a.txt": b"one"})
    os.mkfifo(tmp_path / "pipe")
    assert snapshot(tmp_path, excludes=["pipe"]).manifest.count == 1


def test_device_file_is_refused(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a.txt": b"one"})
    try:
        os.mknod(tmp_path / "null", 0o600 | 0o020000, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("mknod needs root")
    with pytest.raises(DataError) as exc:
        snapshot(tmp_path)
    assert exc.value.details == ["null: device file"]


def test_unreadable_file_is_an_error_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_tree(tmp_path, {"a.txt": b"one", "b.txt": b"two"})
    real_open = os.open

    def deny(path, flags, *a, **k):  # root reads everything, so deny the way the kernel would
        if str(path).endswith("b.txt"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(hashing.os, "open", deny)
    with pytest.raises(DataError) as exc:
        snapshot(tmp_path)
    assert exc.value.message == f"{tmp_path}: 1 file(s) could not be hashed"
    assert exc.value.details == ["b.txt: Permission denied"]


def test_names_that_manifests_cannot_carry_are_refused(tmp_path: Path) -> None:
    # the same check as a manifest's relpaths (relpath_problem): a snapshot never writes a manifest
    # that load_manifest would refuse
    make_tree(tmp_path, {"a\\b.txt": b"x", "new\nline.txt": b"y", "C:x.txt": b"z", "sub/C:ok.txt": b"fine"})
    with pytest.raises(DataError) as exc:
        snapshot(tmp_path)
    assert exc.value.message == f"{tmp_path}: 3 entries are not plain readable files"
    assert exc.value.details == [
        "C:x.txt: path starts with a drive letter; it must be relative to the snapshot folder; rename it",
        "a\\b.txt: path holds a backslash; use '/' as the separator; rename it",
        "new\\nline.txt: path holds a control character; rename it",
    ]


def test_a_name_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a.txt": b"one"})
    with open(os.path.join(os.fsencode(tmp_path), b"caf\xe9.txt"), "wb") as f:  # Latin-1, not UTF-8
        f.write(b"x")
    with pytest.raises(DataError) as exc:
        snapshot(tmp_path)
    assert exc.value.details == [
        "caf\\udce9.txt: path holds a lone surrogate (\\ud800-\\udfff), which is not a character; "
        "file names are UTF-8; rename it"
    ]


def test_empty_folder_and_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no files to snapshot"):
        snapshot(tmp_path)
    with pytest.raises(DataError) as exc:
        snapshot(tmp_path / "nope")
    assert exc.value.message == f"dataset folder {tmp_path / 'nope'} does not exist"


def test_a_failed_write_leaves_the_old_manifest_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_tree(tmp_path, {"a.txt": b"one"})
    snapshot(tmp_path)
    before = (tmp_path / "manifest.json").read_bytes()
    (tmp_path / "b.txt").write_bytes(b"two")

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(DataError) as exc:
        snapshot(tmp_path)
    assert exc.value.message == f"cannot write {tmp_path / 'SHA256SUMS'}: No space left on device"
    assert (tmp_path / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["SHA256SUMS", "a.txt", "b.txt", "manifest.json"]


def test_pool_and_loop_agree_and_report_progress(tmp_path: Path) -> None:
    # enough files for several batches and two files large enough to be tasks of their own
    files = {f"d{i % 7}/f{i}.bin": bytes([i % 251]) * (i * 37 % 9000) for i in range(hashing.BATCH * 2 + 50)}
    files["big1.bin"] = b"\xab" * (hashing.LARGE + 123)
    files["big2.bin"] = b"\xcd" * hashing.LARGE
    make_tree(tmp_path, files)
    items = [(rel, len(files[rel])) for rel in sorted(files)] + [("big1.bin", 5), ("gone.bin", 1)]
    want = [(len(files[r]), sha(files[r]), None) for r in sorted(files)]
    want += [(hashing.LARGE + 123, None, None), (-1, None, hashing.MISSING)]
    for workers in (1, 2):
        seen = []
        out = hashing.hash_files(str(tmp_path), items, lambda n, b, seen=seen: seen.append((n, b)), workers=workers)
        assert out == want
        assert sum(n for n, _ in seen) == len(items)
        assert sum(b for _, b in seen) == sum(map(len, files.values()))


@pytest.mark.parametrize("excludes", [(), ("tmp",), ("*.tmp", "b/c", "tmp")])
@pytest.mark.parametrize("n", [0, 1, 5])
def test_manifest_json_round_trips(tmp_path: Path, excludes, n) -> None:
    names = ["a.png", "ü/ß.png", 'q"uote.png', "x y/z.png", "日本/語.png", "e\u2028f.png", "\u00a0"]
    m = DatasetManifest(
        tuple(FileEntry(f"{names[i % len(names)]}{i}", i * 7919, f"{i:064x}") for i in range(n)), excludes
    )
    text = m.to_json()
    assert json.loads(text) == {
        "version": 1,
        "count": n,
        "excludes": sorted(excludes),
        "files": [{"relpath": f.relpath, "bytes": f.bytes, "sha256": f.sha256} for f in m.files],
    }
    assert "日本" in text or n < 5  # UTF-8, not \u escapes
    (tmp_path / "manifest.json").write_text(text, encoding="utf-8")
    if n:
        assert load_manifest(tmp_path / "manifest.json").manifest_id == m.manifest_id


def _child_pids() -> set[int]:
    pids: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        try:
            pids.update(int(p) for p in (task / "children").read_text().split())
        except FileNotFoundError:  # a thread that ended after the listing (the pool's, another test's)
            continue
    return pids


def test_ctrl_c_while_hashing_leaves_no_worker_behind(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a.bin": b"a"})

    def interrupt(n: int, b: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        hashing.hash_files(str(tmp_path), [("a.bin", 1)] * (hashing.BATCH * 20), interrupt, workers=2)
    assert _child_pids() == set()


def test_a_dying_worker_is_an_error_not_missing_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from reproexec.errors import ReproexecError

    make_tree(tmp_path, {"a.bin": b"a"})
    monkeypatch.setattr(hashing, "hash_file", lambda *args: os._exit(3))  # the workers are forked
    with pytest.raises(ReproexecError) as exc:
        hashing.hash_files(str(tmp_path), [("a.bin", 1)] * (hashing.BATCH * 4), workers=2)
    assert exc.value.message == "a hashing worker process ended unexpectedly (killed, or out of memory)"
    assert _child_pids() == set()


def test_workers_die_with_a_killed_parent(tmp_path: Path) -> None:
    import signal
    import sys
    import time

    make_tree(tmp_path, {"a.bin": b"a"})
    code = (
        "import sys\nfrom reproexec.data import hashing\n"
        "def started(n, b, said=[]):\n    said or print('hashing', flush=True) or said.append(1)\n"
        f"hashing.hash_files({str(tmp_path)!r}, [('a.bin', 1)] * 300_000, started, workers=2)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline() == "hashing\n"
        workers = {
            int(p) for t in Path(f"/proc/{parent.pid}/task").iterdir() for p in (t / "children").read_text().split()
        }
        assert len(workers) == 2
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{w}").exists() for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(Path(f"/proc/{w}").exists() for w in workers)
