"""Signed run attestations and `reproexec verify`, with real files and real signatures (local runtime:
no Docker or torch), and an independent check of what reproexec writes: the DSSE signature verified
from the spec with `cryptography` alone, the statement and its predicate parsed by the in-toto
reference bindings."""

import base64
import json
import os
import shutil
import sys
import tarfile
import textwrap

import pytest
from runfixtures import write_config
from typer.testing import CliRunner

from reproexec.cli.app import app

runner = CliRunner()


@pytest.fixture
def keyring(tmp_path, monkeypatch):
    """This user's key (in a config folder of the test's own) and another user's."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "mine"))
    r = runner.invoke(app, ["keys", "init"])
    assert r.exit_code == 0, r.output
    mine = (tmp_path / "mine" / "reproexec" / "signing-key.pub").read_bytes()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "theirs"))
    assert runner.invoke(app, ["keys", "init"]).exit_code == 0
    theirs = tmp_path / "theirs" / "reproexec" / "signing-key.pub"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "mine"))
    from reproexec.keys import key_id

    return {"mine": key_id(mine), "theirs": key_id(theirs.read_bytes()), "theirs_pub": theirs}


def make_run(tmp_path, snapshot):
    """A bring-your-own run, as a researcher's script makes it (local runtime)."""
    (tmp_path / "train.py").write_text(
        textwrap.dedent("""
        import pathlib, sys
        out = pathlib.Path(sys.argv[1])
        (out / "checkpoint.pt").write_bytes(bytes(range(256)) * 64)
        (out / "metrics" / "metrics.jsonl").write_text('{"step": 1, "loss": 1.5}\\n')
        print("trained")
    """)
    )
    cfg = write_config(tmp_path, snapshot, entrypoint=[sys.executable, "train.py", "${REPROEXEC_RUN_DIR}"])
    runs = tmp_path / "runs"
    r = runner.invoke(app, ["run", str(cfg), "--runtime", "local", "--runs-dir", str(runs)])
    assert r.exit_code == 0, r.output + r.stderr
    (run_dir,) = [p for p in runs.iterdir() if not p.name.startswith(".")]
    return runs, run_dir


def verify(*args):
    return runner.invoke(app, ["verify", *map(str, args)])


def test_a_signed_run_verifies_and_names_its_key(tmp_path, demo_snapshot, keyring):
    runs, run_dir = make_run(tmp_path, demo_snapshot)
    assert (run_dir / "attestation.intoto.json").is_file() and (run_dir / "attestation.pub").is_file()
    r = verify(run_dir.name, "--runs-dir", runs, "--signed-by", keyring["mine"])
    assert r.exit_code == 0, r.output + r.stderr
    assert f"run {run_dir.name} verifies, signed by key {keyring['mine']}" in r.stderr
    doc = json.loads(verify(run_dir, "--json").stdout)
    assert doc["ok"] and doc["signed_by"] == keyring["mine"]
    assert [c["what"] for c in doc["checks"]] == ["files", "records", "attestation", "signature"]


def test_a_flipped_byte_is_named(tmp_path, demo_snapshot, keyring):
    runs, run_dir = make_run(tmp_path, demo_snapshot)
    data = bytearray((run_dir / "checkpoint.pt").read_bytes())
    data[100] ^= 1
    (run_dir / "checkpoint.pt").write_bytes(bytes(data))
    r = verify(run_dir)
    assert r.exit_code == 8
    assert "does not verify: files: checkpoint.pt: sha256" in r.stderr and ", run.json says " in r.stderr


def test_a_file_edited_with_its_line_in_run_json_is_caught_by_the_attestation(tmp_path, demo_snapshot, keyring):
    import hashlib

    runs, run_dir = make_run(tmp_path, demo_snapshot)
    (run_dir / "checkpoint.pt").write_bytes(b"better weights")
    record = json.loads((run_dir / "run.json").read_text())
    record["artifacts"]["checkpoint.pt"] = hashlib.sha256(b"better weights").hexdigest()
    (run_dir / "run.json").write_text(json.dumps(record))
    r = verify(run_dir)
    assert r.exit_code == 8
    assert "does not verify: attestation: checkpoint.pt: sha256" in r.stderr and "attested" in r.stderr


def test_signed_by_another_key_is_refused_and_unsigned_runs_say_so(tmp_path, demo_snapshot, keyring, monkeypatch):
    runs, run_dir = make_run(tmp_path, demo_snapshot)
    r = verify(run_dir, "--signed-by", keyring["theirs"])
    assert r.exit_code == 8 and f"signed by key {keyring['mine']}, not by {keyring['theirs']}" in r.stderr
    r = verify(run_dir, "--key", keyring["theirs_pub"])
    assert r.exit_code == 8 and "the signature does not verify with key" in r.stderr

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "nobody"))  # no key: written unsigned, and says so
    other = tmp_path / "unsigned"
    other.mkdir()
    runs2, unsigned = make_run(other, demo_snapshot)
    assert not (unsigned / "attestation.pub").exists()
    r = verify(unsigned)
    assert r.exit_code == 0 and "unsigned (no key when the run was made): the hashes above hold" in r.stdout
    r = verify(unsigned, "--signed-by", keyring["mine"])
    assert r.exit_code == 8 and "the attestation is unsigned, and a signature was asked for" in r.stderr


def test_a_run_made_before_attestations_verifies_its_recorded_hashes(tmp_path):
    from needs import REPO

    old = "2026-12-06_resnet18_digits_aed67c"
    shutil.copytree(REPO / "tests" / "fixtures" / "runs" / old, tmp_path / old)
    r = verify(tmp_path / old)
    assert r.exit_code == 0, r.output + r.stderr
    assert "none (a run made before attestations): unsigned, recorded hashes checked" in r.stdout


def test_a_bundle_verifies_and_import_requires_the_key_asked_for(tmp_path, demo_snapshot, keyring):
    runs, run_dir = make_run(tmp_path, demo_snapshot)
    bundle = tmp_path / "run.tar.gz"
    assert runner.invoke(app, ["export", run_dir.name, "-o", str(bundle), "--runs-dir", str(runs)]).exit_code == 0
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
    assert f"{run_dir.name}/attestation.intoto.json" in names and f"{run_dir.name}/attestation.pub" in names
    r = verify(bundle, "--signed-by", keyring["mine"])
    assert r.exit_code == 0, r.output + r.stderr

    store = tmp_path / "elsewhere"
    r = runner.invoke(app, ["import", str(bundle), "--signed-by", keyring["theirs"], "--runs-dir", str(store)])
    assert r.exit_code == 8 and "is refused: signature: signed by key" in r.stderr
    assert not store.exists() or not [p for p in store.iterdir() if not p.name.startswith(".")]  # nothing imported
    r = runner.invoke(app, ["import", str(bundle), "--signed-by", keyring["mine"], "--runs-dir", str(store)])
    assert r.exit_code == 0 and f"signed by key {keyring['mine']}" in r.stderr


@pytest.mark.parametrize(
    "envelope, expected",
    [
        (b"not json", "is not a DSSE envelope"),
        (
            json.dumps({"payloadType": "text/plain", "payload": "", "signatures": []}).encode(),
            "payloadType 'text/plain'",
        ),
        (
            json.dumps({"payloadType": "application/vnd.in-toto+json", "payload": "!!", "signatures": []}).encode(),
            "is not a DSSE envelope",
        ),
        (b"[" * 10**6 + b"]" * 10**6, "is not a DSSE envelope"),
        (b" " * (16 * 1024**2 + 1), "larger than the limit"),
    ],
)
def test_a_malformed_envelope_is_a_clear_error(tmp_path, demo_snapshot, envelope, expected):
    runs, run_dir = make_run(tmp_path, demo_snapshot)
    (run_dir / "attestation.intoto.json").write_bytes(envelope)
    r = verify(run_dir)
    assert r.exit_code == 8, r.output
    assert expected in r.stderr and "Traceback" not in r.stderr


def test_duplicate_subjects_and_a_key_file_that_is_a_link_are_refused(tmp_path, demo_snapshot, keyring):
    runs, run_dir = make_run(tmp_path, demo_snapshot)
    path = run_dir / "attestation.intoto.json"
    envelope = json.loads(path.read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["subject"].append(statement["subject"][0])
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    path.write_text(json.dumps(envelope))
    r = verify(run_dir)
    assert r.exit_code == 8 and "a subject is named twice" in r.stderr

    link = tmp_path / "key.pub"
    link.symlink_to(keyring["theirs_pub"])
    r = verify(run_dir, "--key", link)
    assert r.exit_code == 8 and "is never read through a link" in r.stderr


def test_the_attestation_verifies_with_independent_tooling(tmp_path, demo_snapshot, keyring):
    """DSSE v1 from its spec (PAE, Ed25519 with cryptography alone) and the in-toto reference
    bindings for the Statement v1 and the SLSA provenance v1 predicate: not reproexec's own code."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from google.protobuf import json_format
    from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
    from in_toto_attestation.v1 import statement_pb2
    from in_toto_attestation.v1.statement import Statement

    runs, run_dir = make_run(tmp_path, demo_snapshot)
    envelope = json.loads((run_dir / "attestation.intoto.json").read_text())
    payload = base64.b64decode(envelope["payload"])
    ptype = envelope["payloadType"].encode()
    pae = b"DSSEv1 %d %b %d %b" % (len(ptype), ptype, len(payload), payload)
    (sig,) = envelope["signatures"]
    public = load_pem_public_key((run_dir / "attestation.pub").read_bytes())
    public.verify(base64.b64decode(sig["sig"]), pae)  # raises InvalidSignature if not
    assert sig["keyid"] == keyring["mine"]

    doc = json.loads(payload)
    pb = json_format.ParseDict(doc, statement_pb2.Statement())
    Statement.copy_from_pb(pb).validate()
    provenance = json_format.ParseDict(doc["predicate"], provenance_pb2.Provenance())  # no unknown fields
    assert provenance.run_details.metadata.invocation_id == run_dir.name
    names = {s["name"] for s in doc["subject"]}
    assert {"checkpoint.pt", "metrics/metrics.jsonl", "stdout.log"} <= names and "config.yaml" not in names
    deps = {d["name"] for d in doc["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert {"config.yaml", "config.resolved.json", "manifest.json", "dataset", "code"} <= deps
    assert doc["predicate"]["buildDefinition"]["internalParameters"]["seed"] == 1337
    assert oct(os.stat(tmp_path / "mine" / "reproexec" / "signing-key.pem").st_mode & 0o777) == "0o600"
