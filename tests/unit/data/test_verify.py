"""The verify gate and manifests as untrusted input."""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import pytest
from datatrees import make_tree

from reproexec.data.manifest import class_folders, load_manifest, relpath_problem, snapshot, verify_snapshot
from reproexec.errors import DataError

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


def test_a_two_key_manifest_from_a_short_script_is_accepted_as_is(tmp_path: Path) -> None:
    root = make_tree(
        tmp_path / "cats-dogs-v1", {"cats/1.jpg": b"c1", "dogs/10.jpg": b"d10", "dogs/9.jpg": b"d9", "x.jpg": b"x"}
    )

    # as a few lines of Python write it: Path-sorted rglob, str(relative_to), indent=2, ASCII JSON
    def sha256_of(path):
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(8192), b""):
                h.update(chunk)
        return h.hexdigest()

    files = sorted([p for p in root.rglob("*.jpg")])
    manifest = [
        {"relpath": str(p.relative_to(root)), "bytes": os.path.getsize(p), "sha256": sha256_of(p)} for p in files
    ]
    with open(root / "manifest.json", "w") as f:
        json.dump({"count": len(manifest), "files": manifest}, f, indent=2)

    report = verify_snapshot(root)
    assert report.ok and report.checked_files == 4
    # same content → same id as reproexec's own snapshot (which rewrites the file in its format)
    assert snapshot(root).manifest_id == report.manifest_id


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
    assert manifest_problems(tmp_path, doc) == [
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
    assert problems_of(snap) == [
        "missing: train/1/00011.png",
        "unexpected: train/1/00011.png/inner.png (not in the manifest)",
    ]


@pytest.mark.parametrize(
    "relpath",
    [
        ".hidden",
        "a/.b",
        "ab:c",
        "sub/C:x",
        "\u00a0",
        "a\u2028b",
        "ü/ß.png",
        'q"uote.png',
        "sub/manifest.json",
        "a b/c d.png",
    ],
)
def test_relpaths_that_are_fine(relpath: str) -> None:
    assert relpath_problem(relpath) is None


@pytest.mark.parametrize(
    ("relpath", "why"),
    [
        ("a/..", "contains '..'; it must stay inside the snapshot folder"),
        ("..", "contains '..'; it must stay inside the snapshot folder"),
        ("a/", "has an empty or '.' component; write it normalized (a/b.png)"),
        ("a/./b", "has an empty or '.' component; write it normalized (a/b.png)"),
        ("C:x", "starts with a drive letter; it must be relative to the snapshot folder"),
        ("a:b", "starts with a drive letter; it must be relative to the snapshot folder"),
        ("a\tb", "holds a control character"),
        ("a\x7fb", "holds a control character"),
        ("\udcff/x", "holds a lone surrogate (\\ud800-\\udfff), which is not a character; file names are UTF-8"),
        ("SHA256SUMS", "names SHA256SUMS, which reproexec writes itself and is never part of a manifest"),
        ("d/" * 2048 + "x", "is longer than 4,096 bytes, the longest path Linux opens"),
        ("é" * 2049, "is longer than 4,096 bytes, the longest path Linux opens"),
        (5, "must be a string, not a number"),
        (None, "must be a string, not null"),
    ],
)
def test_relpaths_that_are_refused(relpath, why: str) -> None:
    assert relpath_problem(relpath) == why


def manifest_problems(tmp_path: Path, doc) -> list[str]:
    p = write_manifest(tmp_path, doc)
    with pytest.raises(DataError) as exc:
        load_manifest(p)
    n = len(exc.value.details)
    assert exc.value.message == f"manifest {p}: {n} problem{'s' if n != 1 else ''}; refusing to use it"
    assert exc.value.exit_code == 4
    return exc.value.details


def test_wrong_types_at_the_top_level_are_named(tmp_path: Path) -> None:
    entry = {"relpath": "a", "bytes": 1, "sha256": GOOD}
    assert manifest_problems(tmp_path, {"version": True, "count": "1", "excludes": "*.tmp", "files": [entry]}) == [
        "version = true: this reproexec reads version 1",
        "excludes = '*.tmp': must be a list of glob strings",
        "count = '1': must be an integer",
    ]
    assert manifest_problems(tmp_path, {"version": 2, "count": 1, "excludes": [[["x"]]], "files": {"a": 1}}) == [
        "version = 2: this reproexec reads version 1",
        "excludes = [...]: must be a list of glob strings",
        "files: must be a list, not an object",
    ]
    assert manifest_problems(tmp_path, {"count": 1.0, "files": [entry], "excludes": ["", "/abs", "a\\b"]}) == [
        "excludes: empty pattern",
        "excludes: '/abs': patterns are relative to the snapshot folder (no leading '/', no '..')",
        "excludes: 'a\\\\b': no NUL or backslash; use '/' as the separator",
        "count = 1.0: must be an integer",
    ]


def test_entry_values_that_cannot_be_a_file_are_named(tmp_path: Path) -> None:
    long_name = "x" * 100
    doc = {
        "count": 5,
        "files": [
            {"relpath": "huge.bin", "bytes": 2**63, "sha256": GOOD},
            {"relpath": "nested.bin", "bytes": [[[1]]], "sha256": {"a": [1]}},
            {"relpath": long_name, "bytes": 1.5, "sha256": GOOD, long_name: 1},
            {"relpath": ["a"], "bytes": 1, "sha256": GOOD},
            {"relpath": "excl/a.tmp", "bytes": 1, "sha256": GOOD},
        ],
        "excludes": ["*.tmp"],
    }
    shown = repr(long_name)[:57] + "..."
    assert manifest_problems(tmp_path, doc) == [
        "files[0] ('huge.bin'): bytes = 9223372036854775808: larger than any file can be (9,223,372,036,854,775,807)",
        "files[1] ('nested.bin'): bytes = [...]: must be a non-negative integer",
        "files[1] ('nested.bin'): sha256 = {...}: must be 64 lowercase hex digits",
        f"files[2] ({shown}): unknown key(s) {shown}; allowed: bytes, relpath, sha256",
        f"files[2] ({shown}): bytes = 1.5: must be a non-negative integer",
        "files[3]: relpath must be a string, not a list",
        "files[4] ('excl/a.tmp'): relpath matches an exclude pattern, so it cannot be in the snapshot",
    ]


@pytest.mark.parametrize("depth", [100_000, 2_000])
def test_deeply_nested_manifest_is_a_data_error(tmp_path: Path, depth: int) -> None:
    p = write_manifest(tmp_path, "[" * depth + "]" * depth)
    with pytest.raises(DataError) as exc:
        load_manifest(p)
    assert exc.value.message == f"manifest {p} nests lists or objects too deeply to be a manifest"
    nested = '{"count": 1, "files": [{"relpath": "a", "bytes": %s, "sha256": "%s"}]}' % (
        "[" * depth + "]" * depth,
        GOOD,
    )
    p.write_text(nested)
    with pytest.raises(DataError) as exc:
        load_manifest(p)
    assert exc.value.message == f"manifest {p} nests lists or objects too deeply to be a manifest"


def test_moderately_nested_values_are_named_not_printed(tmp_path: Path) -> None:
    deep = "[" * 500 + "]" * 500
    assert manifest_problems(tmp_path, '{"count": %s, "files": %s, "version": %s}' % (deep, deep, deep)) == [
        "version = [...]: this reproexec reads version 1",
        "files[0]: must be an object with relpath, bytes, sha256, not a list",
        "count = [...]: must be an integer",
    ]


def test_a_number_too_long_to_read_is_a_data_error(tmp_path: Path) -> None:
    p = write_manifest(
        tmp_path, '{"count": 1, "files": [{"relpath": "a", "bytes": %s, "sha256": "%s"}]}' % ("9" * 5000, GOOD)
    )
    with pytest.raises(DataError) as exc:
        load_manifest(p)
    assert exc.value.message == f"manifest {p} holds a number too long to be a size or a count"


def test_a_huge_manifest_is_refused_before_it_is_read(tmp_path: Path) -> None:
    from reproexec.data.manifest import MAX_MANIFEST_BYTES

    p = tmp_path / "manifest.json"
    with open(p, "wb") as f:
        f.truncate(MAX_MANIFEST_BYTES + 1)  # sparse: no disk used
    with pytest.raises(DataError) as exc:
        load_manifest(p)
    # 256 MiB: parsed, a manifest takes ~3.5x its size (the old 1 GiB let one take ~4 GB)
    assert exc.value.message == f"manifest {p} is larger than 268,435,456 bytes, the most reproexec reads"
    assert exc.value.hint == (
        "a manifest of 256 MiB lists ~1.5 million files; if this one is a snapshot you trust, raise the limit with "
        "REPROEXEC_MAX_MANIFEST_BYTES=BYTES; otherwise regenerate it with `reproexec data snapshot DIR`"
    )


def test_the_manifest_limit_can_be_raised_or_lowered_and_is_checked(tmp_path: Path, monkeypatch) -> None:
    p = write_manifest(tmp_path, '{"count": 1, "files": [{"relpath": "a", "bytes": 1, "sha256": "%s"}]}' % GOOD)
    monkeypatch.setenv("REPROEXEC_MAX_MANIFEST_BYTES", "64")
    with pytest.raises(DataError) as exc:
        load_manifest(p)
    assert exc.value.message == f"manifest {p} is larger than 64 bytes, the most reproexec reads"
    monkeypatch.setenv("REPROEXEC_MAX_MANIFEST_BYTES", "4096")
    assert load_manifest(p).count == 1
    monkeypatch.setenv("REPROEXEC_MAX_MANIFEST_BYTES", "1g")
    with pytest.raises(DataError) as exc:
        load_manifest(p)
    assert exc.value.message == "REPROEXEC_MAX_MANIFEST_BYTES='1g' is not a number of bytes"


@pytest.mark.timeout(10)
def test_a_manifest_that_is_a_device_is_refused_unread(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").symlink_to("/dev/zero")
    with pytest.raises(DataError) as exc:
        load_manifest(tmp_path / "manifest.json")
    assert exc.value.message == f"manifest {tmp_path / 'manifest.json'} is not a regular file"


def test_a_manifest_that_is_a_fifo_or_a_folder_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.json")
    (tmp_path / "dir.json").mkdir()
    for name in ("fifo.json", "dir.json"):
        with pytest.raises(DataError) as exc:
            load_manifest(tmp_path / name)
        assert exc.value.message == f"manifest {tmp_path / name} is not a regular file"


def test_listed_file_replaced_by_a_fifo_is_irregular_and_does_not_block(snap: Path) -> None:
    p = snap / "train/2/00012.png"
    p.unlink()
    os.mkfifo(p)
    assert problems_of(snap) == ["not a plain file: train/2/00012.png (named pipe (fifo))"]


def test_unexpected_names_no_manifest_can_hold_are_shown_escaped(snap: Path) -> None:
    (snap / "train/1/evil\x1b[2J.png").write_bytes(b"x")
    (snap / "train/1/a\\b.png").write_bytes(b"x")
    assert problems_of(snap) == [
        "not a plain file: train/1/a\\b.png (path holds a backslash; use '/' as the separator; rename it)",
        "not a plain file: train/1/evil\\x1b[2J.png (path holds a control character; rename it)",
    ]


# --- class folders: what the trainer counts as classes, checked on disk before a run folder exists.


def test_an_empty_class_folder_passes_verify_but_is_named_by_class_folders(snap: Path) -> None:
    (snap / "train" / "10").mkdir()  # a manifest lists files only: nothing for verify to miss
    (snap / "train" / "11" / "sub").mkdir(parents=True)
    assert verify_snapshot(snap, quick=True).ok
    (snap / "train" / "11" / ".DS_Store").write_bytes(b"x")  # hidden: the trainer skips it
    with pytest.raises(DataError) as exc:
        class_folders(snap, "train")
    assert exc.value.message == f"{snap / 'train'}: 2 class folders hold no files"
    assert exc.value.details == ["train/10/: empty", "train/11/: empty"]
    assert exc.value.hint == (
        "the trainer counts every folder in train/ as a class: put the class's images in it and take a new snapshot "
        "(`reproexec data snapshot DIR`), or remove the empty folder"
    )
    assert exc.value.exit_code == 4


def test_class_folders_are_the_sub_folders_the_trainer_sees(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        {"train/b/x.png": b"1", "train/a/deep/er/y.png": b"2", "train/.cache/z.png": b"3", "train/f.txt": b"4"},
    )
    assert class_folders(tmp_path, "train") == ["a", "b"]  # sorted; hidden folders and files are not classes
    (tmp_path / "val").mkdir()
    assert class_folders(tmp_path, "val") == []  # the caller decides what no classes means
    (tmp_path / "train" / "c\x1b[2J").mkdir()
    with pytest.raises(DataError) as exc:
        class_folders(tmp_path, "train")
    assert exc.value.details == ["train/c\\x1b[2J/: empty"]  # shown escaped, as verify shows names


def test_class_folders_of_a_missing_parent_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        class_folders(tmp_path, "val")
    assert exc.value.message == f"{tmp_path / 'val'} does not exist"
    assert (
        exc.value.hint
        == "the snapshot needs val/<class>/<image> folders; check data.train_dir / data.val_dir, or the snapshot"
    )
    (tmp_path / "val").write_bytes(b"")
    with pytest.raises(DataError) as exc:
        class_folders(tmp_path, "val")
    assert exc.value.message == f"{tmp_path / 'val'} is not a folder"
