"""The wheelhouse: a changed lockfile downloads only the pins it changed (real pip, a local index)."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from reproexec.env.lock import parse_lock
from reproexec.env.wheels import TargetPlatform, ensure_wheels
from reproexec.errors import LockError, ReproexecError

TARGET = TargetPlatform(python_version="3.11", abi="cp311", machine="x86_64", glibc="2.36")


def make_wheel(folder: Path, name: str, version: str, payload: str = "") -> str:
    """A minimal, valid pure-Python wheel; returns its sha256."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n{payload}",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{p},,\n" for p in files) + f"{dist}/RECORD,,\n"
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for p, text in {**files, f"{dist}/RECORD": record}.items():
            z.writestr(p, text)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def lock_text(pins: dict[str, tuple[str, list[str]]]) -> str:
    return "".join(
        f"{name}=={version} \\\n" + " \\\n".join(f"    --hash=sha256:{h}" for h in hashes) + "\n"
        for name, (version, hashes) in sorted(pins.items())
    )


@pytest.fixture
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pip sees only this folder (no index, no network)."""
    folder = tmp_path / "index"
    folder.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    return folder


def ensure(text: str, cache: Path, logs: list[str] | None = None):
    lock = parse_lock(text, Path("requirements.lock"))
    return ensure_wheels(lock, TARGET, cache=cache, on_log=(logs.append if logs is not None else None))


def test_a_changed_pin_downloads_only_itself(tmp_path: Path, index: Path):
    cache = tmp_path / "cache"
    a1, b1 = make_wheel(index, "alpha", "1.0"), make_wheel(index, "beta", "1.0")
    first = ensure(lock_text({"alpha": ("1.0", [a1]), "beta": ("1.0", [b1])}), cache)
    assert [(w.name, w.version, w.sha256) for w in first] == [("alpha", "1.0", a1), ("beta", "1.0", b1)]
    assert all(w.path.is_file() and w.path.is_relative_to(cache) for w in first)

    # alpha 1.0 can no longer be downloaded: the new lock still builds, from the cached file.
    (index / "alpha-1.0-py3-none-any.whl").unlink()
    b2 = make_wheel(index, "beta", "2.0")
    logs: list[str] = []
    second = ensure(lock_text({"alpha": ("1.0", [a1]), "beta": ("2.0", [b2])}), cache, logs)
    assert [(w.name, w.version, w.sha256) for w in second] == [("alpha", "1.0", a1), ("beta", "2.0", b2)]
    assert second[0].path == first[0].path
    assert "1 locked wheels are cached; 1 changed or new" in logs
    assert any(line.startswith("downloading 1 locked wheels") for line in logs), logs

    # The same lock again: nothing to download at all.
    (index / "beta-2.0-py3-none-any.whl").unlink()
    logs = []
    again = ensure(lock_text({"alpha": ("1.0", [a1]), "beta": ("2.0", [b2])}), cache, logs)
    assert again == second and logs == []


def test_a_pin_whose_hashes_changed_is_downloaded_again(tmp_path: Path, index: Path):
    """Another set of allowed files may make pip choose another file: the earlier choice is not reused."""
    cache = tmp_path / "cache"
    a1 = make_wheel(index, "alpha", "1.0")
    ensure(lock_text({"alpha": ("1.0", [a1])}), cache)
    (index / "alpha-1.0-py3-none-any.whl").unlink()
    with pytest.raises(LockError) as e:
        ensure(lock_text({"alpha": ("1.0", [a1, "0" * 64])}), cache)
    assert "pip could not download" in e.value.message


def test_a_tampered_download_is_refused_and_not_remembered(tmp_path: Path, index: Path):
    cache = tmp_path / "cache"
    make_wheel(index, "alpha", "1.0", payload="EVIL = 1\n")
    with pytest.raises(ReproexecError):
        ensure(lock_text({"alpha": ("1.0", ["1" * 64])}), cache)
    assert not (cache / "resolved" / f"choices-{TARGET.key}.json").exists()


def test_a_damaged_choices_file_means_downloading_again(tmp_path: Path, index: Path):
    cache = tmp_path / "cache"
    a1 = make_wheel(index, "alpha", "1.0")
    b1 = make_wheel(index, "beta", "1.0")
    ensure(lock_text({"alpha": ("1.0", [a1])}), cache)
    choices = cache / "resolved" / f"choices-{TARGET.key}.json"
    entries = json.loads(choices.read_text())
    choices.write_text(json.dumps({k: {"name": "alpha"} for k in entries}))  # no path, no hash
    wheels = ensure(lock_text({"alpha": ("1.0", [a1]), "beta": ("1.0", [b1])}), cache)
    assert [(w.name, w.sha256) for w in wheels] == [("alpha", a1), ("beta", b1)]


def test_a_cache_from_before_the_choices_file_is_remembered_on_its_next_hit(tmp_path: Path, index: Path):
    cache = tmp_path / "cache"
    a1 = make_wheel(index, "alpha", "1.0")
    text = lock_text({"alpha": ("1.0", [a1])})
    ensure(text, cache)
    choices = cache / "resolved" / f"choices-{TARGET.key}.json"
    choices.unlink()  # as a cache written before this file existed
    ensure(text, cache)  # a hit on the lockfile's own index
    assert choices.is_file()
    (index / "alpha-1.0-py3-none-any.whl").unlink()
    b1 = make_wheel(index, "beta", "1.0")
    wheels = ensure(lock_text({"alpha": ("1.0", [a1]), "beta": ("1.0", [b1])}), cache)
    assert [(w.name, w.sha256) for w in wheels] == [("alpha", a1), ("beta", b1)]
