"""The verify gate and manifests as untrusted input."""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import pytest

from reproexec.data.manifest import load_manifest, snapshot, verify_snapshot
from reproexec.errors import DataError
from datatrees import make_tree

pytestmark = pytest.mark.unit

N_FILES = 2000


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~2,000 small files in class folders, snapshotted once; tests work on copies."""
    rng = random.Random(7)
    root = tmp_path_factory.mktemp("pristine")
    make_tree(root, {f"train/{i % 10}/{i:05d}.png": rng.randbytes(rng.randint(100, 3000)) for i in range(N_FILES)})
    snapshot(root)
    return root


@pytest.fixture
def snap(pristine: Path, tmp_path: Path) -> Path:
    import shutil

    dst = tmp_path / "snap"
    shutil.copytree(pristine, dst)
    return dst


def flip_byte(p: Path, offset: int = 17) -> None:
    data = bytearray(p.read_bytes())
    data[offset] ^= 0x01
    p.write_bytes(bytes(data))


def problems_of(root: Path, **kw) -> list[str]:
    with pytest.raises(DataError) as exc:
        verify_snapshot(root, **kw).raise_for_problems()
    return exc.value.details


def test_clean_snapshot_verifies_with_counts(snap: Path) -> None:
    report = verify_snapshot(snap)
    assert report.ok and not report.quick
    assert report.checked_files == N_FILES
    assert report.checked_bytes == sum(f.bytes for f in load_manifest(snap / "manifest.json").files)
    assert report.manifest_id == load_manifest(snap / "manifest.json").manifest_id
    report.raise_for_problems()  # no-op


def test_one_flipped_byte_in_2000_files_is_found(snap: Path) -> None:
    flip_byte(snap / "train/3/01233.png")
    with pytest.raises(DataError) as exc:
        verify_snapshot(snap).raise_for_problems()
    e = exc.value
    assert e.message == f"{snap}: snapshot does not match {snap / 'manifest.json'} (contents checked): 1 changed"
    assert e.details == ["changed: train/3/01233.png (sha256 differs from the manifest)"]
    assert e.hint.startswith("restore the files listed above")
    assert e.exit_code == 4


def test_truncated_file_is_resized(snap: Path) -> None:
    p = snap / "train/0/00010.png"
    size = p.stat().st_size
    os.truncate(p, 5)
    assert problems_of(snap) == [f"resized: train/0/00010.png ({size} bytes in the manifest, 5 on disk)"]


def test_missing_and_extra_files(snap: Path) -> None:
    (snap / "train/1/00001.png").unlink()
    (snap / "train/1/new.png").write_bytes(b"not in the manifest")
    assert problems_of(snap) == ["missing: train/1/00001.png", "unexpected: train/1/new.png (not in the manifest)"]


def test_renamed_file_says_renamed_from(snap: Path) -> None:
    os.rename(snap / "train/2/00002.png", snap / "train/2/00002-copy.png")
    report = verify_snapshot(snap)
    assert report.renamed == [("train/2/00002.png", "train/2/00002-copy.png")]
    assert report.missing == [] and report.unexpected == []
    assert problems_of(snap) == ["renamed: train/2/00002-copy.png (renamed from train/2/00002.png; same sha256)"]


def test_every_problem_is_listed_at_once(snap: Path) -> None:
    flip_byte(snap / "train/3/00003.png")
    flip_byte(snap / "train/3/00013.png")
    os.truncate(snap / "train/4/00004.png", 1)
    (snap / "train/5/00005.png").unlink()
    (snap / "train/6/00006.png").unlink()
    (snap / "extra.txt").write_text("hello")
    os.rename(snap / "train/7/00007.png", snap / "train/8/00007.png")
    (snap / "train/9/link.png").symlink_to("00009.png")
    with pytest.raises(DataError) as exc:
        verify_snapshot(snap).raise_for_problems()
    assert exc.value.message.endswith(": 2 missing, 1 resized, 2 changed, 1 unexpected, 1 renamed, 1 irregular")
    size4 = load_manifest(snap / "manifest.json")
    exp4 = next(f.bytes for f in size4.files if f.relpath == "train/4/00004.png")
    assert exc.value.details == [
        "missing: train/5/00005.png",
        "missing: train/6/00006.png",
        f"resized: train/4/00004.png ({exp4} bytes in the manifest, 1 on disk)",
        "changed: train/3/00003.png (sha256 differs from the manifest)",
        "changed: train/3/00013.png (sha256 differs from the manifest)",
        "renamed: train/8/00007.png (renamed from train/7/00007.png; same sha256)",
        "unexpected: extra.txt (not in the manifest)",
        "not a plain file: train/9/link.png (symlink to 00009.png)",
    ]


def test_listed_file_replaced_by_symlink_is_irregular_not_missing(snap: Path) -> None:
    target = snap / "train/0/00000.png"
    target.unlink()
    target.symlink_to("/etc/hostname")
    assert problems_of(snap) == ["not a plain file: train/0/00000.png (symlink to /etc/hostname, outside the snapshot)"]


def test_quick_checks_sizes_only(snap: Path) -> None:
    flip_byte(snap / "train/3/00003.png")
    report = verify_snapshot(snap, quick=True)
    assert report.ok and report.quick and report.checked_files == N_FILES and report.checked_bytes == 0
    os.truncate(snap / "train/3/00003.png", 2)
    with pytest.raises(DataError) as exc:
        verify_snapshot(snap, quick=True).raise_for_problems()
    assert "(sizes checked)" in exc.value.message
    assert exc.value.details[0].startswith("resized: train/3/00003.png")


def test_error_details_are_capped(snap: Path) -> None:
    for i in range(60):
        (snap / f"extra{i:02d}.bin").write_bytes(b"x")
    details = problems_of(snap)
    assert len(details) == 51 and details[-1] == "... and 10 more"


def test_seed_example_2_manifest_is_accepted_as_is(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "cats-dogs-v1", {"cats/1.jpg": b"c1", "dogs/10.jpg": b"d10", "dogs/9.jpg": b"d9", "x.jpg": b"x"})

    # the seed's script, verbatim in spirit: Path-sorted rglob, str(relative_to), indent=2, ASCII JSON
    def sha256_of(path):
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(8192), b""):
                h.update(chunk)
        return h.hexdigest()

    files = sorted([p for p in root.rglob("*.jpg")])
    manifest = [{"relpath": str(p.relative_to(root)), "bytes": os.path.getsize(p), "sha256": sha256_of(p)} for p in files]
    with open(root / "manifest.json", "w") as f:
        json.dump({"count": len(manifest), "files": manifest}, f, indent=2)

    report = verify_snapshot(root)
    assert report.ok and report.checked_files == 4
    # same content → same id as reproexec's own snapshot (which rewrites the file in its format)
    seed_id = report.manifest_id
    assert snapshot(root).manifest_id == seed_id


def test_manifest_outside_the_folder(snap: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.json"
    os.replace(snap / "manifest.json", outside)
    assert verify_snapshot(snap, manifest_path=outside).ok
    inside = snap / "my-manifest.json"  # kept inside under another name: not unexpected
    os.replace(outside, inside)
    assert verify_snapshot(snap, manifest_path=inside).ok


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        verify_snapshot(tmp_path)
    assert exc.value.message == f"manifest {tmp_path / 'manifest.json'} does not exist"
    assert "reproexec data snapshot DIR" in exc.value.hint


def write_manifest(root: Path, doc) -> Path:
    p = root / "manifest.json"
    p.write_text(json.dumps(doc) if not isinstance(doc, str) else doc, encoding="utf-8")
    return p


GOOD = "a" * 64


@pytest.mark.parametrize(
    ("relpath", "why"),
    [
        ("../x", "contains '..'; it must stay inside the snapshot folder"),
        ("a/../../x", "contains '..'; it must stay inside the snapshot folder"),
        ("/etc/passwd", "is absolute; it must be relative to the snapshot folder"),
        ("a\\b.png", "holds a backslash; use '/' as the separator"),
        ("C:/x.png", "starts with a drive letter; it must be relative to the snapshot folder"),
        ("a\x00b", "holds a NUL character"),
        ("", "is empty"),
        ("a//b", "has an empty or '.' component; write it normalized (a/b.png)"),
        ("./a", "has an empty or '.' component; write it normalized (a/b.png)"),
        ("manifest.json", "names manifest.json, which reproexec writes itself and is never part of a manifest"),
        ("b\ud800.png", "holds a lone surrogate (\\ud800-\\udfff), which is not a character; file names are UTF-8"),
    ],
)
def test_unsafe_relpaths_are_refused(tmp_path: Path, relpath: str, why: str) -> None:
    p = write_manifest(tmp_path, {"count": 1, "files": [{"relpath": relpath, "bytes": 1, "sha256": GOOD}]})
    with pytest.raises(DataError) as exc:
        load_manifest(p)
    assert exc.value.message == f"manifest {p}: 1 problem; refusing to use it"
    assert exc.value.details == [f"files[0] ({relpath!r}): relpath {why}"]


def test_all_manifest_problems_are_listed_at_once(tmp_path: Path) -> None:
    doc = {
        "count": 7,
        "extra": 1,
        "files": [
            {"relpath": "a.png", "bytes": 1, "sha256": GOOD},
            {"relpath": "a.png", "bytes": 1, "sha256": GOOD},
            {"relpath": "b.png", "bytes": -1, "sha256": GOOD},
            {"relpath": "c.png", "bytes": 1, "sha256": "XYZ"},
            {"relpath": "d.png", "bytes": True, "sha256": GOOD.upper()},
            {"relpath": "e.png"},
            "f.png",
        ],
    }
    p = write_manifest(tmp_path, doc)
    with pytest.raises(DataError) as exc:
        load_manifest(p)
    assert exc.value.details == [
        "unknown top-level key(s): 'extra'; allowed: count, excludes, files, version",
        "files[1] ('a.png'): duplicate relpath, also files[0]",
        "files[2] ('b.png'): bytes = -1: must be a non-negative integer",
        "files[3] ('c.png'): sha256 = 'XYZ': must be 64 lowercase hex digits",
        "files[4] ('d.png'): bytes = true: must be a non-negative integer",
        f"files[4] ('d.png'): sha256 = '{GOOD.upper()[:56]}...: must be 64 lowercase hex digits",
        "files[5] ('e.png'): bytes is missing",
        "files[5] ('e.png'): sha256 is missing",
        "files[6]: must be an object with relpath, bytes, sha256, not a string",
    ]


def test_count_must_agree_with_files(tmp_path: Path) -> None:
    p = write_manifest(tmp_path, {"count": 2, "files": [{"relpath": "a", "bytes": 1, "sha256": GOOD}]})
    with pytest.raises(DataError) as exc:
        load_manifest(p)
    assert exc.value.details == ["count = 2 but files lists 1 entries"]
    p = write_manifest(tmp_path, {"files": []})
    with pytest.raises(DataError) as exc:
        load_manifest(p)
    assert exc.value.details == ["count: required field is missing"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", " is not valid JSON: Expecting property name enclosed in double quotes at line 1, column 2"),
        ("[1, 2]", ": the top level must be an object with 'count' and 'files', not a list"),
    ],
)
def test_non_json_manifest(tmp_path: Path, text: str, message: str) -> None:
    p = write_manifest(tmp_path, text)
    with pytest.raises(DataError) as exc:
        load_manifest(p)
    assert exc.value.message == f"manifest {p}{message}"


def test_binary_manifest(tmp_path: Path) -> None:
    p = tmp_path / "manifest.json"
    p.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError) as exc:
        load_manifest(p)
    assert exc.value.message == f"manifest {p} is not UTF-8 text: invalid start byte at byte 0"


def test_folder_swapped_for_a_symlink_is_not_verified_through_it(snap: Path, tmp_path: Path) -> None:
    import shutil

    moved = tmp_path / "moved0"
    shutil.move(snap / "train/0", moved)
    (snap / "train/0").symlink_to(moved)  # same bytes, reached through a link: not a plain snapshot
    report = verify_snapshot(snap)
    assert report.irregular == [("train/0", f"symlink to {moved}, outside the snapshot")]
    assert len(report.missing) == N_FILES // 10 and report.changed == []
    assert report.checked_files == N_FILES - N_FILES // 10


def test_listed_file_replaced_by_a_folder(snap: Path) -> None:
    p = snap / "train/1/00011.png"
    p.unlink()
    p.mkdir()
    (p / "inner.png").write_bytes(b"x")
    assert problems_of(snap) == ["missing: train/1/00011.png", "unexpected: train/1/00011.png/inner.png (not in the manifest)"]


# The whole-list fast check must never accept what the per-entry checks refuse.
_TRICKY_RELPATHS = [
    "a.png", "cls/b.png", "ü/ß.png", "a b/c d.png", 'q"uote.png', "x/y/z.bin", ".hidden", "a/.b", "a/..",
    "..", "../x", "a/../b", "/abs", "a/", "a//b", "./a", "a/./b", "C:/x", "C:x", "a:b", "a\\b", "a\nb",
    "a\tb", "a\x00b", "a\x7fb", "b\ud800", "\udcff/x", "", "manifest.json", "SHA256SUMS", "sub/manifest.json", "a\u2028b", "\u00a0",
]
_TRICKY_DIGESTS = ["a" * 64, "0123456789abcdef" * 4, "A" * 64, "a" * 63, "a" * 65, "g" * 64, "a" * 62 + "  ", 5, None]
_TRICKY_SIZES = [0, 7, 2**40, -1, True, 1.0, "7", None]


def test_whole_list_check_accepts_only_what_the_entry_checks_accept(monkeypatch) -> None:
    from reproexec.data import manifest as m

    rng = random.Random(1234)
    taken = 0
    for _ in range(3000):
        files = []
        for _ in range(rng.randint(1, 4)):
            entry = {
                "relpath": rng.choice(_TRICKY_RELPATHS) if rng.random() < 0.5 else f"d{rng.randint(0, 9)}/{rng.randint(0, 99)}.png",
                "bytes": rng.choice(_TRICKY_SIZES) if rng.random() < 0.3 else rng.randint(0, 10**6),
                "sha256": rng.choice(_TRICKY_DIGESTS) if rng.random() < 0.3 else hashlib.sha256(os.urandom(4)).hexdigest(),
            }
            if rng.random() < 0.05:
                entry.pop(rng.choice(list(entry)))
            if rng.random() < 0.05:
                entry["extra"] = 1
            files.append(entry)
        fast = m._plain_entries(files)
        if fast is None:
            continue
        taken += 1
        with monkeypatch.context() as mp:
            mp.setattr(m, "_plain_entries", lambda files: None)
            slow = m.manifest_from_dict({"count": len(files), "files": files})  # raises if any entry is refused
        assert sorted(fast) == list(slow.files), files
    assert taken > 300  # the fuzzing reached the accepting side often enough to mean something


def test_whole_list_check_takes_real_snapshots(snap: Path) -> None:
    from reproexec.data import manifest as m

    doc = json.loads((snap / "manifest.json").read_text(encoding="utf-8"))
    assert m._plain_entries(doc["files"]) == list(load_manifest(snap / "manifest.json").files)
