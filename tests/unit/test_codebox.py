"""code.tar: the code a bring-your-own run ran, kept in its run folder and read back as untrusted input."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from reproexec import codebox
from reproexec.codebox import capture_code, read_code_tar, work_tree_files, write_code_tar
from reproexec.errors import RunError


def git_repo(root: Path) -> Path:
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    (root / ".gitignore").write_text("ignored/\n")
    (root / "train.py").write_text("print(42)\n")
    (root / "pkg").mkdir()
    (root / "pkg" / "model.py").write_text("X = 1\n")
    (root / "ignored").mkdir()
    (root / "ignored" / "big.bin").write_bytes(b"x")
    (root / "runs").mkdir()
    (root / "runs" / "old.txt").write_text("a run")
    subprocess.run(["git", "add", "."], cwd=root, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c"], cwd=root, check=True)
    (root / "new.py").write_text("untracked\n")
    (root / "link.py").symlink_to(root / "train.py")
    return root


def test_work_tree_files_and_code_tar_round_trip(tmp_path: Path) -> None:
    root = git_repo(tmp_path / "repo")
    (root / "odd\\name.py").write_text("fine on POSIX\n")
    code = capture_code(root, exclude=[root / "runs"])
    rels = work_tree_files(code, exclude=[root / "runs"])
    assert rels == [".gitignore", "new.py", "odd\\name.py", "pkg/model.py", "train.py"]  # no ignored, runs or symlinks
    write_code_tar(root, rels, tmp_path / "a.tar")
    write_code_tar(root, list(reversed(rels)), tmp_path / "b.tar")
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()  # same files, same bytes
    back = read_code_tar(tmp_path / "a.tar")
    assert [(e.arcname, e.data) for e in back] == [(rel, (root / rel).read_bytes()) for rel in rels]


def test_a_code_folder_over_the_limits_is_refused_before_the_run(tmp_path: Path, monkeypatch) -> None:
    root = git_repo(tmp_path / "repo")
    monkeypatch.setattr(codebox, "MAX_CODE_FILES", 3)
    with pytest.raises(RunError) as exc:
        work_tree_files(capture_code(root), exclude=[root / "runs"])
    assert exc.value.message == f"the code folder {root} cannot be kept as the run's code.tar"
    assert exc.value.details[0].startswith("4 files, ") and "limits: 3 files" in exc.value.details[0]
    assert ".gitignore them" in exc.value.hint


def test_outside_git_caches_are_not_code(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    (root / "__pycache__").mkdir(parents=True)
    (root / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"x")
    (root / "m.py").write_text("")
    assert work_tree_files(capture_code(root)) == ["m.py"]


def _tar_with(path: Path, *members: tuple[tarfile.TarInfo, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (
            _member("../evil.py"),
            "'../evil.py': not a normalized relative path inside the code folder (contains '..'; it must stay inside the folder)",
        ),
        (
            _member("/etc/cron.d/x"),
            "'/etc/cron.d/x': not a normalized relative path inside the code folder (is absolute; it must be relative to the folder)",
        ),
        (
            _member("a/../../x"),
            "'a/../../x': not a normalized relative path inside the code folder (contains '..'; it must stay inside the folder)",
        ),
        (_member("ln.py", tarfile.SYMTYPE, "/etc/passwd"), "'ln.py': links, sparse and special files are not code"),
        (_member("dev", tarfile.CHRTYPE), "'dev': links, sparse and special files are not code"),
        (_member("hard.py", tarfile.LNKTYPE, "ok.py"), "'hard.py': links, sparse and special files are not code"),
        (
            _member("./ok2.py"),
            "'./ok2.py': not a normalized relative path inside the code folder (has an empty or '.' component; write it normalized (a/b.png))",
        ),
        (
            _member("a//b.py"),
            "'a//b.py': not a normalized relative path inside the code folder (has an empty or '.' component; write it normalized (a/b.png))",
        ),
        (_member("ok.py"), "'ok.py': listed twice"),
        (_member("ok.py/inner.py"), "'ok.py': both a file and a folder"),
    ],
)
def test_a_code_tar_from_elsewhere_is_checked(tmp_path: Path, member, message: str) -> None:
    path = _tar_with(tmp_path / "code.tar", (_member("ok.py"), b"ok"), (member, b""))
    with pytest.raises(RunError) as exc:
        read_code_tar(path)
    assert exc.value.message == f"{path} is refused: it is not a code snapshot reproexec wrote"
    assert exc.value.details == [message]


def test_a_damaged_code_tar_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "code.tar"
    path.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(RunError) as exc:
        read_code_tar(path)
    assert exc.value.message.startswith(f"{path} cannot be read")


# --- the folder hash (a config outside git): one algorithm with reproexec's own source hash.


def test_the_folder_hash_is_the_sorted_tree_hash_of_its_regular_files(tmp_path: Path) -> None:
    import hashlib
    import os

    root = tmp_path / "plain"
    (root / "a" / "__pycache__").mkdir(parents=True)
    (root / "a" / "__pycache__" / "m.pyc").write_bytes(b"cache")
    (root / "a" / "x.py").write_bytes(b"x")
    (root / "b.py").write_bytes(b"b")
    (root / os.fsdecode(b"caf\xe9.py")).write_bytes(b"latin-1 name")  # was a UnicodeEncodeError
    (root / "link.py").symlink_to(root / "b.py")
    os.mkfifo(root / "pipe")  # skipped, never opened
    (root / "runs").mkdir()
    (root / "runs" / "r.json").write_bytes(b"{}")
    h = hashlib.sha256()
    for rel, data in ((b"a/x.py", b"x"), (b"b.py", b"b"), (b"caf\xe9.py", b"latin-1 name")):  # path order
        h.update(rel + b"\0" + hashlib.sha256(data).digest())
    assert codebox.folder_hash(root, exclude=[root / "runs"]) == h.hexdigest()
    assert capture_code(root, exclude=[root / "runs"]).tree_sha256 == h.hexdigest()


def test_the_folder_hash_streams_a_large_file(tmp_path: Path) -> None:
    import tracemalloc

    root = tmp_path / "plain"
    root.mkdir()
    with open(root / "big.bin", "wb") as f:
        f.truncate(64 * 1024**2)  # sparse; read whole, it was 64 MiB in memory (a 3 GB file: 3.2 GB)
    tracemalloc.start()
    try:
        codebox.folder_hash(root)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024**2


def test_a_file_that_cannot_be_hashed_is_a_run_error_naming_it(tmp_path: Path, monkeypatch) -> None:
    import os

    root = tmp_path / "plain"
    root.mkdir()
    os.mkfifo(root / "swapped")  # as if a file were replaced by a FIFO after the walk
    monkeypatch.setattr(codebox, "_lstat_mode", lambda path: 0o100644)
    with pytest.raises(RunError) as exc:
        codebox.folder_hash(root)
    assert exc.value.message == f"cannot hash {root / 'swapped'} for the run's code record: not a regular file"
