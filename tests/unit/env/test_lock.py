import os
from pathlib import Path

import pytest

from reproexec.env.lock import MAX_LOCK_BYTES, MAX_LOCK_PROBLEMS, MAX_LOGICAL_LINE, parse_lock, read_lock
from reproexec.errors import LockError

H1, H2 = "a" * 64, "b" * 64


def test_pip_compile_format_is_read_with_continuations_and_comments():
    text = (
        f"numpy==2.4.6 \\\n    --hash=sha256:{H2} \\\n    --hash=sha256:{H1}\n    # via torch\n"
        f"Pillow==13.0.0 --hash=sha256:{H1}  # an inline comment\n"
    )
    lock = parse_lock(text, Path("r.lock"))
    assert [(r.name, r.version, r.hashes, r.line) for r in lock.requirements] == [
        ("numpy", "2.4.6", (H1, H2), 1),
        ("pillow", "13.0.0", (H1,), 5),
    ]
    assert lock.get("PIL-low") is None and lock.get("Pillow").pin == "pillow==13.0.0"


def test_every_problem_is_listed_with_its_line():
    text = f"numpy==2.4.6\ntorch>=2 --hash=sha256:{H1}\n--index-url https://x\nrequests==2.* --hash=sha256:{H1}\nsix==1 --hash=md5:00\n"
    with pytest.raises(LockError) as e:
        parse_lock(text, Path("r.lock"))
    assert e.value.details == [
        "line 1: numpy==2.4.6 has no --hash=sha256:...",
        "line 2: 'torch>=2' is not pinned to one exact version (name==version)",
        "line 3: option '--index-url' is not allowed in a lockfile",
        "line 4: 'requests==2.*' is not pinned to one exact version (name==version)",
        "line 5: hash 'md5:00' is not sha256:<64 hex digits>",
    ]
    assert "reproexec lock requirements.in -o r.lock" in e.value.hint


def test_missing_lockfile_says_how_to_make_one(tmp_path):
    with pytest.raises(LockError, match="does not exist") as e:
        read_lock(tmp_path / "requirements.lock")
    assert "reproexec lock" in e.value.hint


def test_demo_lockfile_is_complete_and_hashed():
    lock = read_lock("examples/digits/requirements.lock")
    assert lock.get("torch").version == "2.14.1"
    assert lock.get("torchvision").version == "0.29.1"
    assert all(r.hashes for r in lock.requirements)
    assert lock.missing(["numpy", "pillow", "matplotlib", "pydantic", "pyyaml"]) == []


# --- hostile input (issue 20): env.lockfile names whatever a config says; it is read bounded.


@pytest.mark.timeout(10)  # before the fix a FIFO hung the read
@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda p: p.mkdir(), "a folder"),  # was an IsADirectoryError traceback
        (lambda p: os.mkfifo(p), "a device, FIFO or socket"),
        (lambda p: p.symlink_to("/dev/null"), "a device, FIFO or socket"),  # as /dev/zero, which grew to 24 GB
    ],
    ids=["folder", "fifo", "device"],
)
def test_a_lockfile_that_is_not_a_regular_file_is_a_lock_error(tmp_path, make, kind):
    path = tmp_path / "requirements.lock"
    make(path)
    with pytest.raises(LockError) as e:
        read_lock(path)
    assert e.value.message == f"lockfile {path} cannot be read: it is {kind}, not a regular file"
    assert e.value.hint == "point env.lockfile at the file `reproexec lock` wrote (a regular file)"
    assert e.value.exit_code == 3


def test_a_lockfile_over_the_limit_is_refused_unread(tmp_path):
    path = tmp_path / "requirements.lock"
    with open(path, "wb") as f:
        f.truncate(MAX_LOCK_BYTES + 1)  # sparse
    with pytest.raises(LockError) as e:
        read_lock(path)
    assert e.value.message == f"lockfile {path} is larger than 16,777,216 bytes, the most reproexec reads"


def test_a_lockfile_that_is_not_utf8_is_a_lock_error(tmp_path):
    path = tmp_path / "requirements.lock"
    path.write_bytes(f"numpy==2.4.6 --hash=sha256:{H1}\n\xff\n".encode("latin-1"))
    with pytest.raises(LockError) as e:
        read_lock(path)
    assert e.value.message == f"lockfile {path} is not UTF-8 text: invalid start byte at byte 92"


def test_a_lockfile_of_junk_is_reported_by_its_first_problems():
    with pytest.raises(LockError) as e:
        parse_lock("ab\n" * 1_000_000, Path("r.lock"))
    assert len(e.value.details) == MAX_LOCK_PROBLEMS + 1
    assert (
        e.value.details[-1] == f"... and more: reading stopped at line 51, after the first {MAX_LOCK_PROBLEMS} problems"
    )
    with pytest.raises(LockError) as e:
        parse_lock(f"numpy==2.4.6 --hash=sha256:{H1}\n" * 200, Path("r.lock"))
    assert e.value.details[0] == "line 2: numpy is pinned twice (first on line 1)"
    assert e.value.details[-1] == f"... and {199 - MAX_LOCK_PROBLEMS} more"


def test_a_huge_line_is_refused_without_being_split_or_printed():
    with pytest.raises(LockError) as e:
        parse_lock('"x" \\\n' * 100_000 + f"numpy==2.4.6 --hash=sha256:{H1}\n", Path("r.lock"))
    assert e.value.details == [
        f"line 1: longer than {MAX_LOGICAL_LINE:,} characters with its continuations; not one requirement"
    ]
    with pytest.raises(LockError) as e:
        parse_lock("a " * 1000 + "\n", Path("r.lock"))
    assert e.value.details == [
        "line 1: 'a a a a a a a a a a a a a a a a a a a a a a a a a a a a ... is not a requirement "
        "(Expected semicolon (after name with no version specifier) or end)"
    ]


def test_a_hash_without_an_algorithm_is_a_problem_not_a_crash():
    with pytest.raises(LockError) as e:
        parse_lock("numpy==2.4.6 --hash=abc\n", Path("r.lock"))  # was an IndexError
    assert e.value.details == ["line 1: hash 'abc' is not sha256:<64 hex digits>"]
