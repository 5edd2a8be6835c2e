"""A run's attestation: what it produced and how, signed, so a reviewer can trust it in seconds.

`attestation.intoto.json` in a run folder is a DSSE envelope (securesystemslib) around an in-toto
Statement v1 whose predicate is SLSA provenance v1, built as plain JSON from run.json and the
folder's files:

- subjects: every file the run produced (checkpoints, metrics, summary, confusion matrix,
  predictions, logs, a bring-your-own script's outputs), by sha256;
- resolvedDependencies: every file that went in (config as written and resolved, lockfile,
  Dockerfile, recipe, manifest, code patch and code.tar) by sha256, and the image (content hash),
  its base layers, the dataset (manifest id), the code (commit or tree hash), reproexec's wheel;
- parameters: the config's name and sha256, the entrypoint, the seed, determinism settings and the
  pinned environment, reproexec's version;
- runDetails: the run id and the times, and nothing else, so two identical runs' build
  definitions are the same.

Signed with the user's key when one exists (keys.py), else written unsigned, which it says
(`signatures: []`); the signer's public key travels beside it (`attestation.pub`) so `verify
--signed-by KEYID` can check it is the key a reviewer trusts. `verify_folder` rebuilds the
statement from the folder as it is now and compares it with the signed one, so a file and its line
in run.json edited together still stand out.
"""

from __future__ import annotations

import binascii
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reproexec.errors import AttestationError
from reproexec.fsutil import UnreadableFile, read_bounded, sha256_file, write_atomic
from reproexec.keys import PublicKey, read_public_key
from reproexec.runs.store import ATTESTATION, RESOLVED_CONFIG, RUN_JSON, SIGNER_KEY, read_run_json

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://github.com/reproexec/reproexec/blob/main/docs/run-v1.md"
BUILDER_ID = "https://github.com/reproexec/reproexec"
MAX_ENVELOPE_BYTES = 16 * 1024**2
# The files that went into a run (its inputs: dependencies in the statement); every other file of
# the run folder is something it produced (a subject). recipe/ is the image's build context.
INPUTS = frozenset(
    {"config.yaml", RESOLVED_CONFIG, "requirements.lock", "Dockerfile", "manifest.json", "code.patch", "code.tar"}
)
INPUT_FOLDERS = ("recipe/",)


def is_input(rel: str) -> bool:
    return rel in INPUTS or rel.startswith(INPUT_FOLDERS)


def statement(record: dict[str, Any]) -> dict[str, Any]:
    """The in-toto Statement of a run, from its run.json (whose artifacts hold every file's sha256)."""
    artifacts: dict[str, str] = record.get("artifacts") or {}
    image = record.get("image") if isinstance(record.get("image"), dict) else {}
    rnd = record.get("randomness") if isinstance(record.get("randomness"), dict) else {}
    code = record.get("code") if isinstance(record.get("code"), dict) else {}
    data = record.get("data") if isinstance(record.get("data"), dict) else {}
    config = record.get("config") if isinstance(record.get("config"), dict) else {}
    runtime = record.get("runtime") if isinstance(record.get("runtime"), dict) else {}
    deps: list[dict[str, Any]] = [
        {"name": rel, "digest": {"sha256": sha}} for rel, sha in sorted(artifacts.items()) if is_input(rel)
    ]
    if image:
        base = image.get("base") if isinstance(image.get("base"), dict) else {}
        inputs = image.get("hash_inputs") if isinstance(image.get("hash_inputs"), dict) else {}
        deps.append(
            {
                "name": "image",
                "uri": f"docker:{image.get('tag')}",
                "digest": {"sha256": image.get("content_hash")},
                "annotations": {
                    "base_layers": base.get("layers"),
                    "lock_sha256": inputs.get("lock_sha256"),
                    "dockerfile_sha256": inputs.get("dockerfile_sha256"),
                },
            }
        )
        inside = image.get("reproexec") if isinstance(image.get("reproexec"), dict) else None
        if inside:
            deps.append(
                {
                    "name": "reproexec",
                    "uri": f"pypi:{inside.get('wheel')}",
                    "digest": {"sha256": inside.get("sha256")},
                    "annotations": {"version": inside.get("version")},
                }
            )
    deps.append(
        {
            "name": "dataset",
            "digest": {"sha256": data.get("manifest_id")},
            "annotations": {"files": data.get("files"), "bytes": data.get("bytes")},
        }
    )
    commit = {"gitCommit": code["commit"]} if code.get("commit") else {"sha256": code.get("tree_sha256")}
    deps.append({"name": "code", "digest": commit, "annotations": {"patch_sha256": code.get("patch_sha256")}})
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": rel, "digest": {"sha256": sha}} for rel, sha in sorted(artifacts.items()) if not is_input(rel)
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "config": {"name": config.get("name"), "sha256": artifacts.get(RESOLVED_CONFIG)},
                    "entrypoint": record.get("entrypoint"),
                    "runtime": runtime.get("kind"),
                    "gpu": runtime.get("gpu"),
                },
                "internalParameters": {
                    "seed": rnd.get("seed"),
                    "determinism": rnd.get("determinism"),
                    "environment": rnd.get("environment"),
                    "reproexec_version": record.get("reproexec_version"),
                },
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": {"id": BUILDER_ID},
                "metadata": {
                    "invocationId": record.get("run_id"),
                    "startedOn": record.get("started_at"),
                    "finishedOn": record.get("finished_at"),
                },
            },
        },
    }


def attest(run_dir: Path, record: dict[str, Any], signer: tuple[Any, PublicKey] | None) -> str | None:
    """Write the run's attestation (signed when a signer is given; its public key beside it).
    Returns the signer's key id, or None (unsigned)."""
    from securesystemslib.dsse import Envelope

    payload = json.dumps(statement(record), sort_keys=True, separators=(",", ":")).encode()
    envelope = Envelope(payload=payload, payload_type=PAYLOAD_TYPE, signatures={})
    if signer is not None:
        envelope.sign(signer[0])
        write_atomic(run_dir / SIGNER_KEY, signer[1].pem)
    else:
        (run_dir / SIGNER_KEY).unlink(missing_ok=True)
    write_atomic(run_dir / ATTESTATION, json.dumps(envelope.to_dict(), indent=2, sort_keys=True) + "\n")
    return signer[1].keyid if signer is not None else None


# -- verify ----------------------------------------------------------------------------------------
@dataclass
class Check:
    what: str
    ok: bool
    detail: str
    problems: list[str] = field(default_factory=list)


@dataclass
class Verification:
    run_id: str
    checks: list[Check] = field(default_factory=list)
    signed_by: str | None = None  # the key id whose signature verified
    attested: bool = False

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def first_problem(self) -> Check | None:
        return next((c for c in self.checks if not c.ok), None)

    def add(self, what: str, problems: list[str], ok_detail: str) -> bool:
        detail = "; ".join(problems[:3]) + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")
        self.checks.append(Check(what, not problems, detail if problems else ok_detail, problems))
        return not problems

    def to_dict(self) -> dict[str, Any]:
        checks = [{"what": c.what, "ok": c.ok, "detail": c.detail} for c in self.checks]
        return {
            "run_id": self.run_id,
            "ok": self.ok,
            "attested": self.attested,
            "signed_by": self.signed_by,
            "checks": checks,
        }


def verify_folder(run_dir: Path, *, key: PublicKey | None = None, signed_by: str | None = None) -> Verification:
    """Check a run folder without Docker or training: every recorded file's sha256, the attestation's
    statement against the folder as it is (subjects, dependencies, parameters), the folder's own
    records against each other, and the signature (with `key`, or the carried key when its id is
    `signed_by`, or, with neither, the carried key as it is)."""
    record = read_run_json(run_dir / RUN_JSON)
    result = Verification(run_id=str(record.get("run_id")))
    artifacts: dict[str, str] = record.get("artifacts") or {}
    bad = []
    for rel, sha in sorted(artifacts.items()):
        try:
            actual = sha256_file(run_dir / rel, follow_symlinks=False)
        except OSError as e:
            bad.append(f"{rel}: {e.strerror or e}")
            continue
        if actual != sha:
            bad.append(f"{rel}: sha256 {actual[:12]}…, run.json says {sha[:12]}…")
    result.add("files", bad, f"{len(artifacts)} files match run.json's sha256")
    result.add(
        "records", _records_agree(run_dir, record), "manifest id, lockfile, Dockerfile and config agree with run.json"
    )

    envelope = _read_envelope(run_dir)
    if envelope is None:
        result.add(
            "attestation",
            [] if not (key or signed_by) else ["the run has no attestation"],
            "none (a run made before attestations): unsigned, recorded hashes checked",
        )
        return result
    result.attested = True
    try:
        attested = json.loads(envelope.payload)
        _check_statement(attested)
    except (ValueError, RecursionError, AttestationError) as e:
        result.add("attestation", [f"{ATTESTATION}: {getattr(e, 'message', e)}"], "")
        return result
    result.add(
        "attestation",
        _differences(attested, statement(record)),
        f"{len(attested['subject'])} results and {len(attested['predicate']['buildDefinition']['resolvedDependencies'])} "
        "inputs as run.json and the files say",
    )
    _check_signature(result, run_dir, envelope, key=key, signed_by=signed_by)
    return result


def verify_ref(ref: str, runs_dir: Path, *, key_path: Path | None = None, signed_by: str | None = None) -> Verification:
    """`reproexec verify`: a run in the store, a run folder, or a bundle (unpacked privately first)."""
    import re

    if signed_by is not None and not re.fullmatch(r"[0-9a-f]{64}", signed_by):
        raise AttestationError(
            f"--signed-by {signed_by!r} is not a key id", "a key id is 64 hex digits: `reproexec keys show` prints it"
        )
    key = read_public_key(key_path) if key_path is not None else None
    if Path(ref).is_file():
        from reproexec.runs.bundle import unpacked

        with unpacked(Path(ref)) as folder:
            return verify_folder(folder, key=key, signed_by=signed_by)
    from reproexec.runs.store import load_run

    return verify_folder(load_run(ref, runs_dir).path, key=key, signed_by=signed_by)


def _check_signature(
    result: Verification, run_dir: Path, envelope: Any, *, key: PublicKey | None, signed_by: str | None
) -> None:
    from securesystemslib.exceptions import VerificationError

    if not envelope.signatures:
        problems = ["the attestation is unsigned, and a signature was asked for"] if (key or signed_by) else []
        result.add("signature", problems, "unsigned (no key when the run was made): the hashes above hold")
        return
    trusted = key is not None or signed_by is not None
    if key is None:
        if not (run_dir / SIGNER_KEY).exists():
            result.add("signature", [f"signed, but {SIGNER_KEY} is missing and no --key was given"], "")
            return
        key = read_public_key(run_dir / SIGNER_KEY)
    if signed_by is not None and key.keyid != signed_by:
        result.add("signature", [f"signed by key {key.keyid}, not by {signed_by}"], "")
        return
    try:
        envelope.verify([key.sslib()], 1)
    except (VerificationError, ValueError) as e:
        result.add("signature", [f"the signature does not verify with key {key.keyid[:16]}… ({e})"], "")
        return
    result.signed_by = key.keyid
    note = "" if trusted else f" (the key it carries: pass --signed-by {key.keyid[:16]}… to require the one you trust)"
    result.add("signature", [], f"signed by key {key.keyid}{note}")


def _read_envelope(run_dir: Path) -> Any | None:
    from securesystemslib.dsse import Envelope

    path = run_dir / ATTESTATION
    if not path.exists() and not path.is_symlink():
        return None
    try:
        doc = json.loads(read_bounded(path, MAX_ENVELOPE_BYTES, follow_symlinks=False))
    except UnreadableFile as e:
        raise AttestationError(f"{ATTESTATION} cannot be read: {e.strerror}", "the run folder was altered") from None
    except (OSError, ValueError, RecursionError) as e:
        raise AttestationError(f"{ATTESTATION} is not a DSSE envelope: {e}", "the run folder was altered") from None
    problems = []
    if not isinstance(doc, dict):
        problems.append("not a JSON object")
    else:
        if doc.get("payloadType") != PAYLOAD_TYPE:
            problems.append(f"payloadType {str(doc.get('payloadType'))[:80]!r}, not {PAYLOAD_TYPE}")
        if not isinstance(doc.get("payload"), str):
            problems.append("no payload")
        sigs = doc.get("signatures")
        if not isinstance(sigs, list) or not all(
            isinstance(s, dict) and isinstance(s.get("keyid"), str) and isinstance(s.get("sig"), str) for s in sigs
        ):
            problems.append("signatures are not a list of {keyid, sig}")
    if problems:
        raise AttestationError(
            f"{ATTESTATION} is not an attestation reproexec wrote: {'; '.join(problems)}", "the run folder was altered"
        )
    try:
        return Envelope.from_dict(json.loads(json.dumps(doc)))
    except (KeyError, ValueError, binascii.Error, TypeError) as e:
        raise AttestationError(f"{ATTESTATION} is not a DSSE envelope: {e}", "the run folder was altered") from None


def _check_statement(doc: Any) -> None:
    """The shape verify relies on: an in-toto Statement v1 with SLSA provenance and unique subjects."""
    if not isinstance(doc, dict) or doc.get("_type") != STATEMENT_TYPE or doc.get("predicateType") != PREDICATE_TYPE:
        raise AttestationError("not an in-toto Statement v1 with a SLSA provenance v1 predicate")
    subjects = doc.get("subject")
    if not isinstance(subjects, list) or not all(
        isinstance(s, dict) and isinstance(s.get("name"), str) for s in subjects
    ):
        raise AttestationError("its subjects are not a list of named files")
    names = [s["name"] for s in subjects]
    if len(names) != len(set(names)):
        raise AttestationError(f"a subject is named twice: {next(n for n in names if names.count(n) > 1)!r}")
    predicate = doc.get("predicate")
    if not isinstance(predicate, dict) or not isinstance(
        (predicate.get("buildDefinition") or {}).get("resolvedDependencies"), list
    ):
        raise AttestationError("its predicate has no build definition")


def _differences(attested: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Where the signed statement and the one the folder gives now part, named as a reader would."""
    out: list[str] = []
    a_subjects = {s["name"]: s.get("digest", {}).get("sha256") for s in attested["subject"]}
    n_subjects = {s["name"]: s["digest"]["sha256"] for s in now["subject"]}
    for name in sorted(set(a_subjects) | set(n_subjects)):
        a, n = a_subjects.get(name), n_subjects.get(name)
        if a != n:
            out.append(
                f"{name}: "
                + (
                    "not in the attestation"
                    if a is None
                    else "attested but gone"
                    if n is None
                    else f"sha256 {str(n)[:12]}…, attested {str(a)[:12]}…"
                )
            )
    a_deps = {
        d.get("name"): d
        for d in attested["predicate"]["buildDefinition"]["resolvedDependencies"]
        if isinstance(d, dict)
    }
    n_deps = {d["name"]: d for d in now["predicate"]["buildDefinition"]["resolvedDependencies"]}
    for name in sorted(set(a_deps) | set(n_deps), key=str):
        if a_deps.get(name) != n_deps.get(name):
            out.append(
                f"input {name}: run.json and the files say {_short(n_deps.get(name))}, attested {_short(a_deps.get(name))}"
            )
    for part in ("externalParameters", "internalParameters"):
        a, n = attested["predicate"]["buildDefinition"].get(part), now["predicate"]["buildDefinition"][part]
        for k in sorted(set(a or {}) | set(n), key=str):
            if (a or {}).get(k) != n.get(k):
                out.append(f"{part}.{k}: run.json says {_short(n.get(k))}, attested {_short((a or {}).get(k))}")
    if attested["predicate"].get("runDetails") != now["predicate"]["runDetails"]:
        out.append("runDetails (run id, times): run.json differs from the attestation")
    return out


def _short(v: Any) -> str:
    text = json.dumps(v, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _records_agree(run_dir: Path, record: dict[str, Any]) -> list[str]:
    """The folder's own records against run.json: what run.json claims about its inputs (manifest
    id, lockfile, Dockerfile, config, seed, determinism) is what the input files say. A rerun
    replays the files, so a hand-edited run.json would otherwise report a replay of something else."""
    from reproexec.data.manifest import load_manifest
    from reproexec.errors import ReproexecError
    from reproexec.fsutil import read_json_object

    problems = []
    data = record.get("data") if isinstance(record.get("data"), dict) else {}
    if (run_dir / "manifest.json").exists():
        try:
            actual = load_manifest(run_dir / "manifest.json").manifest_id
        except ReproexecError as e:
            problems.append(f"manifest.json: {e.message}")
        else:
            if actual != data.get("manifest_id"):
                problems.append(
                    f"data.manifest_id: run.json {str(data.get('manifest_id'))[:16]}…, manifest.json {actual[:16]}…"
                )
    image = record.get("image") if isinstance(record.get("image"), dict) else {}
    inputs = image.get("hash_inputs") if isinstance(image.get("hash_inputs"), dict) else {}
    artifacts = record.get("artifacts") or {}
    for rel, key in (("requirements.lock", "lock_sha256"), ("Dockerfile", "dockerfile_sha256")):
        if rel in artifacts and key in inputs and artifacts[rel] != inputs[key]:
            problems.append(f"{rel} is not the one the image was built from ({key})")
    config = record.get("config") if isinstance(record.get("config"), dict) else {}
    if "config.yaml" in artifacts and config.get("sha256") and artifacts["config.yaml"] != config["sha256"]:
        problems.append("config.yaml is not the config run.json names")
    resolved = read_json_object(run_dir / RESOLVED_CONFIG) or {}
    rnd = record.get("randomness") if isinstance(record.get("randomness"), dict) else {}
    if "seed" in rnd and "seed" in resolved and rnd["seed"] != resolved["seed"]:
        problems.append(f"seed: run.json {rnd['seed']!r}, {RESOLVED_CONFIG} {resolved['seed']!r}")
    det = rnd.get("determinism") if isinstance(rnd.get("determinism"), dict) else {}
    cfg_det = resolved.get("determinism") if isinstance(resolved.get("determinism"), dict) else {}
    for key, value in det.items():
        if key in cfg_det and cfg_det[key] != value:
            problems.append(f"determinism.{key}: run.json {value!r}, {RESOLVED_CONFIG} {cfg_det[key]!r}")
    return problems
