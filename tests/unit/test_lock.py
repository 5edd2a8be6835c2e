from pathlib import Path

import pytest

from reproexec.errors import LockError
from reproexec.lock import parse_lock, read_lock

pytestmark = pytest.mark.unit
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
