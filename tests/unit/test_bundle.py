"""Bundles from elsewhere are untrusted: every unsafe member is refused before anything lands."""

import io
import json
import tarfile

import pytest

from reproexec import bundle
from reproexec.bundle import import_bundle
from reproexec.errors import RunError
from reproexec.runstore import artifact_hashes

pytestmark = pytest.mark.unit
RUN = "2026-11-24_resnet18_digits_abcdef"


def _add(tar, name, data=b"x", **attrs):
    info = tarfile.TarInfo(name)
    info.size = len(data) if attrs.get("type", tarfile.REGTYPE) == tarfile.REGTYPE else 0
    for k, v in attrs.items():
        setattr(info, k, v)
    tar.addfile(info, io.BytesIO(data) if info.size else None)


def make_bundle(path, extra=(), tamper=False):
    files = {"summary.json": b'{"final": {}}', "metrics/epochs.jsonl": b"{}\n"}
    record = {"run_id": RUN, "status": "succeeded"}
    record["artifacts"] = {k: __import__("hashlib").sha256(v).hexdigest() for k, v in files.items()}
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, f"{RUN}/run.json", json.dumps(record).encode())
        for k, v in files.items():
            _add(tar, f"{RUN}/{k}", v + (b"!" if tamper and k == "summary.json" else b""))
        for args in extra:
            _add(tar, *args[:2], **(args[2] if len(args) > 2 else {}))
    return path


def test_a_good_bundle_lands_in_the_store_with_its_hashes(tmp_path):
    record, had_image = import_bundle(make_bundle(tmp_path / "b.tar.gz"), tmp_path / "runs")
    assert record.run_id == RUN and had_image is False
    assert artifact_hashes(record.path) == {**record.data["artifacts"]}


@pytest.mark.parametrize(
    "member, expected",
    [
        (("../evil.sh", b"x"), "'../evil.sh': '..' leaves the run folder"),
        ((f"{RUN}/../../etc/cron.d/x", b"x"), "'..' leaves the run folder"),
        (("/etc/passwd", b"x"), "'/etc/passwd': absolute path"),
        ((f"{RUN}/link", b"", {"type": tarfile.SYMTYPE, "linkname": "/etc/shadow"}), "link -> '/etc/shadow'"),
        ((f"{RUN}/hard", b"", {"type": tarfile.LNKTYPE, "linkname": f"{RUN}/run.json"}), "link ->"),
        ((f"{RUN}/dev", b"", {"type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}), "device, fifo or special file"),
        ((f"{RUN}/fifo", b"", {"type": tarfile.FIFOTYPE}), "device, fifo or special file"),
        (("other-run/x", b"x"), "a bundle holds one run"),
    ],
)
def test_unsafe_members_are_refused_and_nothing_is_written(tmp_path, member, expected):
    runs = tmp_path / "runs"
    with pytest.raises(RunError) as e:
        import_bundle(make_bundle(tmp_path / "b.tar.gz", extra=[member]), runs)
    assert "is refused: it is not a safe run bundle" in e.value.message
    assert any(expected in d for d in e.value.details), e.value.details
    assert not (tmp_path / "evil.sh").exists()
    assert [p.name for p in runs.iterdir()] == [] if runs.exists() else True


def test_oversized_member_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(bundle, "MAX_MEMBER_BYTES", 10)
    with pytest.raises(RunError) as e:
        import_bundle(make_bundle(tmp_path / "b.tar.gz", extra=[(f"{RUN}/big.bin", b"y" * 11)]), tmp_path / "runs")
    assert f"'{RUN}/big.bin': 11 bytes (limit 10)" in e.value.details


def test_a_file_altered_after_export_is_refused(tmp_path):
    runs = tmp_path / "runs"
    with pytest.raises(RunError, match="does not match its own run.json") as e:
        import_bundle(make_bundle(tmp_path / "b.tar.gz", tamper=True), runs)
    assert e.value.details == ["summary.json: sha256 differs from run.json"]
    assert not (runs / RUN).exists() and not [p for p in runs.iterdir() if not p.name.startswith(".")]


def test_not_a_tar(tmp_path):
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tar")
    with pytest.raises(RunError, match="cannot be read"):
        import_bundle(junk, tmp_path / "runs")


def test_a_saved_image_is_loaded_only_from_a_bundle_that_checks_out(tmp_path):
    loaded = []

    def load(stream):
        loaded.append(stream.read())

    image = (f"{RUN}/image.tar", b"image bytes")
    with pytest.raises(RunError):
        import_bundle(make_bundle(tmp_path / "bad.tar.gz", extra=[image], tamper=True), tmp_path / "runs", load)
    assert loaded == []
    record, had_image = import_bundle(make_bundle(tmp_path / "good.tar.gz", extra=[image]), tmp_path / "runs", load)
    assert had_image and loaded == [b"image bytes"]
    assert not (record.path / "image.tar").exists()  # streamed to docker load, not copied into the store
