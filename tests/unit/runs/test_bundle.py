"""Bundles from elsewhere are untrusted: every unsafe member, listing, size and run.json is refused
before anything lands, and a saved image never moves a tag it names."""

import hashlib
import io
import json
import tarfile

import pytest
from typer.testing import CliRunner

from reproexec.engine import ImageInfo
from reproexec.errors import RunError
from reproexec.runs import bundle
from reproexec.runs.bundle import import_bundle
from reproexec.runs.store import artifact_hashes

RUN = "2026-11-24_resnet18_digits_abcdef"
IMAGE_ID = "sha256:" + "1" * 64
CONTENT = "2" * 64


def _add(tar, name, data=b"x", **attrs):
    info = tarfile.TarInfo(name)
    info.size = len(data) if attrs.get("type", tarfile.REGTYPE) == tarfile.REGTYPE else 0
    for k, v in attrs.items():
        setattr(info, k, v)
    tar.addfile(info, io.BytesIO(data) if info.size else None)


def run_json(**changes):
    files = {"summary.json": b'{"final": {}}', "metrics/epochs.jsonl": b"{}\n"}
    record = {
        "schema": 1,
        "run_id": RUN,
        "status": "succeeded",
        "started_at": "2026-11-24T10:00:00+00:00",
        "reproexec_version": "0.1.0",
        "artifacts": {k: hashlib.sha256(v).hexdigest() for k, v in files.items()},
    }
    record.update(changes)
    return record, files


def make_bundle(path, extra=(), tamper=False, record=None, raw_run_json=None, top=RUN):
    rec, files = run_json()
    rec = rec if record is None else record
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, f"{top}/run.json", raw_run_json if raw_run_json is not None else json.dumps(rec).encode())
        for k, v in files.items():
            _add(tar, f"{top}/{k}", v + (b"!" if tamper and k == "summary.json" else b""))
        for args in extra:
            _add(tar, *args[:2], **(args[2] if len(args) > 2 else {}))
    return path


def test_a_good_bundle_lands_in_the_store_with_its_hashes(tmp_path):
    result = import_bundle(make_bundle(tmp_path / "b.tar.gz"), tmp_path / "runs")
    assert result.record.run_id == RUN and result.image is None and not result.already_present
    assert artifact_hashes(result.record.path) == {**result.record.data["artifacts"]}
    again = import_bundle(make_bundle(tmp_path / "b2.tar.gz"), tmp_path / "runs")
    assert again.already_present  # the same run twice is fine


@pytest.mark.parametrize(
    "member, expected",
    [
        (("../evil.sh", b"x"), "'../evil.sh': contains '..'; it must stay inside the folder"),
        ((f"{RUN}/../../etc/cron.d/x", b"x"), "contains '..'"),
        (("/etc/passwd", b"x"), "'/etc/passwd': is absolute"),
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
    assert not runs.exists() or list(runs.iterdir()) == []


def test_oversized_member_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(bundle, "MAX_MEMBER_BYTES", 10)
    with pytest.raises(RunError) as e:
        import_bundle(make_bundle(tmp_path / "b.tar.gz", extra=[(f"{RUN}/big.bin", b"y" * 11)]), tmp_path / "runs")
    assert f"'{RUN}/big.bin': 11 bytes (limit 10)" in e.value.details


def test_a_file_run_json_does_not_list_is_refused(tmp_path):
    runs = tmp_path / "runs"
    with pytest.raises(RunError, match="holds files its run.json does not list") as e:
        import_bundle(make_bundle(tmp_path / "b.tar.gz", extra=[(f"{RUN}/evil.sh", b"rm -rf /")]), runs)
    assert e.value.details == [f"'{RUN}/evil.sh': not listed in run.json"]
    assert not runs.exists() or list(runs.iterdir()) == []


def test_the_total_unpacked_size_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(bundle, "MAX_BUNDLE_BYTES", 20)
    with pytest.raises(RunError) as e:
        import_bundle(make_bundle(tmp_path / "b.tar.gz"), tmp_path / "runs")
    size = len(json.dumps(run_json()[0]).encode()) + len(b'{"final": {}}') + len(b"{}\n")
    assert f"unpacks to {size} bytes (limit 20); nothing was imported" in e.value.message
    assert "REPROEXEC_BUNDLE_MAX_BYTES" in e.value.hint


def test_a_file_altered_after_export_is_refused(tmp_path):
    runs = tmp_path / "runs"
    with pytest.raises(RunError, match="does not match its own run.json") as e:
        import_bundle(make_bundle(tmp_path / "b.tar.gz", tamper=True), runs)
    (detail,) = e.value.details
    assert detail.startswith("summary.json: sha256 ") and ", run.json says " in detail
    assert not (runs / RUN).exists() and not [p for p in runs.iterdir() if not p.name.startswith(".")]


@pytest.mark.parametrize(
    "raw, expected",
    [
        (b"[1, 2]", "(top level): Input should be a valid dictionary"),
        (b"[" * 100_000 + b"]" * 100_000, "is not valid JSON: maximum recursion depth exceeded"),
        (json.dumps({**run_json()[0], "started_at": 5}).encode(), "started_at: Input should be a valid string"),
        (json.dumps({**run_json()[0], "run_id": "../../../elsewhere"}).encode(), "run_id: String should match pattern"),
        (
            json.dumps({**run_json()[0], "artifacts": {"../x": "0" * 64}}).encode(),
            "unsafe path or malformed sha256: '../x'",
        ),
        (json.dumps({**run_json()[0], "status": "running"}).encode(), "is still running"),
        (
            json.dumps({**run_json()[0], "schema": 99}).encode(),
            "has run.json schema 99 (written by reproexec 0.1.0); this reproexec (",
        ),
        (json.dumps({**run_json()[0], "run_id": "other-run"}).encode(), "run.json says run 'other-run'"),
    ],
)
def test_a_run_json_that_is_not_valid_is_refused_with_what_is_wrong(tmp_path, raw, expected):
    runs = tmp_path / "runs"
    with pytest.raises(RunError) as e:
        import_bundle(make_bundle(tmp_path / "b.tar.gz", raw_run_json=raw), runs)
    assert expected in str(e.value), str(e.value)
    assert not runs.exists() or list(runs.iterdir()) == []


def test_a_different_run_under_an_existing_id_is_refused(tmp_path):
    runs = tmp_path / "runs"
    import_bundle(make_bundle(tmp_path / "a.tar.gz"), runs)
    before = (runs / RUN / "run.json").read_bytes()
    other = {**run_json()[0], "reason": "another run"}
    with pytest.raises(RunError, match=f"a different run {RUN} is already in"):
        import_bundle(make_bundle(tmp_path / "b.tar.gz", record=other), runs)
    assert (runs / RUN / "run.json").read_bytes() == before


@pytest.mark.parametrize("damage", ["junk", "truncated"])
def test_a_damaged_bundle_is_a_clear_error_from_the_command_line(tmp_path, damage):
    from reproexec.cli.app import app

    path = make_bundle(tmp_path / "b.tar.gz")
    data = path.read_bytes()
    path.write_bytes(b"not a tar" if damage == "junk" else data[: len(data) // 2])
    r = CliRunner().invoke(app, ["import", str(path), "--runs-dir", str(tmp_path / "runs")])
    assert r.exit_code == 7, r.output
    assert f"error: bundle {path} cannot be read" in r.stderr
    assert "damaged, truncated or not a tar archive" in r.stderr and "Aborted" not in r.output


# -- images: loaded without their own tags, kept only when they are the recorded image ---------------


def docker_save_tar(repo_tags):
    """A minimal `docker save` archive naming `repo_tags` in manifest.json and repositories."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        _add(tar, "abc/layer.tar", b"layer")
        _add(tar, "config.json", b"{}")
        _add(
            tar,
            "manifest.json",
            json.dumps([{"Config": "config.json", "RepoTags": repo_tags, "Layers": ["abc/layer.tar"]}]).encode(),
        )
        _add(tar, "repositories", json.dumps({"victim": {"latest": "abc"}}).encode())
    return buf.getvalue()


class LoadingEngine:
    """The narrow engine surface bundle import uses: load reads the stream like Docker would."""

    def __init__(self, loaded_id=IMAGE_ID, label=CONTENT):
        self.loaded_id, self.label = loaded_id, label
        self.images: dict[str, ImageInfo] = {"victim:latest": ImageInfo("sha256:" + "9" * 64, ("victim:latest",), ())}
        self.seen: dict = {}

    def load(self, chunks):
        data = b"".join(chunks)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            self.seen = {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}
        manifest = json.loads(self.seen["manifest.json"])
        for entry in manifest:  # what Docker would do with the names
            for tag in entry["RepoTags"] or []:
                self.images[tag] = ImageInfo(self.loaded_id, (tag,), ())
        self.images[self.loaded_id] = ImageInfo(self.loaded_id, (), (), {"org.reproexec.content-hash": self.label})
        return [self.loaded_id]

    def image(self, ref):
        return self.images.get(ref)

    def tag(self, image_id, repository, tag):
        self.images[f"{repository}:{tag}"] = self.images[image_id]


def image_bundle(tmp_path, name="b.tar.gz"):
    record, _ = run_json(image={"tag": f"reproexec-env:{CONTENT}", "id": IMAGE_ID, "content_hash": CONTENT})
    image = (f"{RUN}/image.tar", docker_save_tar(["victim:latest"]))
    return make_bundle(tmp_path / name, extra=[image], record=record)


def test_a_saved_image_never_moves_a_tag_it_names_and_is_tagged_only_as_a_bundle_image(tmp_path):
    engine = LoadingEngine()
    result = import_bundle(image_bundle(tmp_path), tmp_path / "runs", lambda: engine)
    assert result.image == IMAGE_ID
    assert json.loads(engine.seen["manifest.json"])[0]["RepoTags"] is None and "repositories" not in engine.seen
    assert engine.images["victim:latest"].id == "sha256:" + "9" * 64  # untouched
    # never reproexec-env:<hash>, which a later build of the same inputs would take as its cache hit
    assert (
        engine.images[f"reproexec-bundle:{CONTENT}"].id == IMAGE_ID and f"reproexec-env:{CONTENT}" not in engine.images
    )
    assert not (result.record.path / "image.tar").exists()  # streamed to docker load, not copied into the store


@pytest.mark.parametrize(
    "engine, expected",
    [
        (LoadingEngine(loaded_id="sha256:" + "3" * 64), "is not the one its run.json records"),
        (LoadingEngine(label="4" * 64), f"lacks the recorded content hash {CONTENT}"),
    ],
)
def test_an_image_that_is_not_the_recorded_one_is_never_tagged(tmp_path, engine, expected):
    with pytest.raises(RunError, match=expected):
        import_bundle(image_bundle(tmp_path), tmp_path / "runs", lambda: engine)
    assert not any(tag.startswith("reproexec-") for tag in engine.images)
    assert engine.images["victim:latest"].id == "sha256:" + "9" * 64


def test_an_image_is_loaded_only_from_a_bundle_whose_run_checks_out(tmp_path):
    engine = LoadingEngine()
    record, _ = run_json(image={"tag": f"reproexec-env:{CONTENT}", "id": IMAGE_ID, "content_hash": CONTENT})
    path = make_bundle(
        tmp_path / "b.tar.gz", extra=[(f"{RUN}/image.tar", docker_save_tar(None))], record=record, tamper=True
    )
    with pytest.raises(RunError, match="does not match its own run.json"):
        import_bundle(path, tmp_path / "runs", lambda: engine)
    assert engine.seen == {}


def test_an_image_the_run_does_not_record_is_refused(tmp_path):
    path = make_bundle(tmp_path / "b.tar.gz", extra=[(f"{RUN}/image.tar", docker_save_tar(None))])
    with pytest.raises(RunError, match="holds an image but its run.json records none"):
        import_bundle(path, tmp_path / "runs", lambda: LoadingEngine())


def test_a_full_disk_during_export_is_a_clear_error_and_leaves_nothing(tmp_path):
    import errno

    from reproexec.runs.store import load_run

    import_bundle(make_bundle(tmp_path / "b.tar.gz"), tmp_path / "runs")
    record = load_run(RUN, tmp_path / "runs")
    record.data["image"] = {"tag": "reproexec-env:" + CONTENT}

    class FullDisk:
        def save(self, reference, out):
            out.write(b"part of an image")
            raise OSError(errno.ENOSPC, "No space left on device")

    out = tmp_path / "out" / "run.tar"
    out.parent.mkdir()
    with pytest.raises(RunError) as e:
        bundle.export_run(record, out, engine=FullDisk(), with_image=True)
    assert e.value.message == f"disk full while writing {out}: nothing was written"
    assert "about the image's size" in e.value.hint  # streamed into a .tar: no second copy needed
    assert list(out.parent.iterdir()) == []  # no bundle, no temporary image, no .tmp


class SavingEngine:
    """`docker save` as the Docker SDK gives it: chunks of a length no one knows in advance."""

    def __init__(self, data):
        self.data = data

    def save(self, reference, out):
        for i in range(0, len(self.data), 7001):  # odd sizes: the member is padded to 512 bytes
            out.write(self.data[i : i + 7001])


@pytest.mark.parametrize("name", ["run.tar", "run.tar.gz"])
def test_an_exported_image_round_trips_streamed_or_saved_first(tmp_path, name):
    from reproexec.runs.store import load_run

    record, _ = run_json(image={"tag": f"reproexec-env:{CONTENT}", "id": IMAGE_ID, "content_hash": CONTENT})
    import_bundle(make_bundle(tmp_path / "b.tar.gz", record=record), tmp_path / "runs")
    saved = docker_save_tar(None) + b"\0" * 12345  # docker's own padding, of any length
    out = tmp_path / "out" / name
    out.parent.mkdir()
    bundle.export_run(load_run(RUN, tmp_path / "runs"), out, engine=SavingEngine(saved), with_image=True)

    assert [p.name for p in out.parent.iterdir()] == [name]  # no temporary image left beside it
    with tarfile.open(out) as tar:
        member = tar.getmember(f"{RUN}/image.tar")
        assert member.size == len(saved) and tar.extractfile(member).read() == saved
        assert tar.getnames()[-1] == f"{RUN}/image.tar"
    engine = LoadingEngine()
    result = import_bundle(out, tmp_path / "other-store", lambda: engine)
    assert result.image == IMAGE_ID and engine.images[f"reproexec-bundle:{CONTENT}"].id == IMAGE_ID


def test_an_in_place_header_holds_an_image_larger_than_8_gib():
    info = tarfile.TarInfo(f"{RUN}/image.tar")
    info.size = 9 * 1024**3 + 3  # beyond ustar's 11 octal digits
    header = info.tobuf(tarfile.GNU_FORMAT)
    assert len(header) == tarfile.BLOCKSIZE  # the same 512 bytes as the size-0 placeholder
    assert tarfile.TarInfo.frombuf(header, "utf-8", "surrogateescape").size == info.size
