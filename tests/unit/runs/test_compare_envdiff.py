import json

import pytest

from reproexec.engine import ContainerResult
from reproexec.errors import EngineError, ReproexecError
from reproexec.runs.compare import DIFFERS, IDENTICAL, WITHIN, compare_runs
from reproexec.runs.envdiff import EnvView, classify, diff_env, view_from_parts


def make_run(folder, losses, val_acc, weights="w" * 64):
    (folder / "metrics").mkdir(parents=True)
    steps = [{"step": i + 1, "epoch": 1, "loss": v, "lr": 0.1} for i, v in enumerate(losses)]
    (folder / "metrics" / "steps.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    epochs = [
        {"epoch": 1, "train_loss": sum(losses) / len(losses), "val_acc": val_acc, "per_class_acc": {"0": val_acc}}
    ]
    (folder / "metrics" / "epochs.jsonl").write_text("".join(json.dumps(e) + "\n" for e in epochs))
    (folder / "summary.json").write_text(json.dumps({"weights_sha256": weights, "final": {"val_acc": val_acc}}))
    return folder


def test_identical_within_tolerance_and_differs(tmp_path):
    a = make_run(tmp_path / "a", [2.0, 1.5, 1.0], 0.9)
    assert compare_runs(a, make_run(tmp_path / "b", [2.0, 1.5, 1.0], 0.9)).verdict == IDENTICAL
    c = make_run(tmp_path / "c", [2.0, 1.5000001, 1.0], 0.9, weights="v" * 64)
    loose = compare_runs(a, c, {"loss": 1e-5, "train_loss": 1e-5})
    assert loose.verdict == WITHIN and loose.exit_code == 10 and loose.within_tolerance == 2
    strict = compare_runs(a, c)
    assert strict.verdict == DIFFERS and strict.exit_code == 11
    d = strict.first_divergence
    assert (d.where, d.metric, d.a, d.b) == ("step 2", "loss", 1.5, 1.5000001)
    assert strict.final == {"val_acc": (0.9, 0.9)}


def test_equal_metrics_but_other_weights_is_not_identical(tmp_path):
    a = make_run(tmp_path / "a", [2.0, 1.0], 0.9)
    b = make_run(tmp_path / "b", [2.0, 1.0], 0.9, weights="x" * 64)
    c = compare_runs(a, b)
    assert c.verdict == DIFFERS and c.first_divergence.where == "weights"


def test_missing_steps_differ_where_the_shorter_run_ends(tmp_path):
    c = compare_runs(make_run(tmp_path / "a", [2.0, 1.0, 0.5], 0.9), make_run(tmp_path / "b", [2.0, 1.0], 0.9))
    assert c.verdict == DIFFERS and c.first_divergence.where == "step 3"


def make_byo_run(folder, outputs: dict, records: str = "r", results=None, logs=None):
    from reproexec.config import DEFAULT_LOGS, DEFAULT_RESULTS
    from reproexec.runs.store import artifact_hashes

    for rel, content in {
        "config.yaml": records,
        "environment.json": records,
        "code.tar": records,
        "report.html": records,
        **outputs,
    }.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(content if isinstance(content, bytes) else content.encode())
    output = {"results": list(results or DEFAULT_RESULTS), "logs": list(logs or DEFAULT_LOGS)}
    (folder / "config.resolved.json").write_text(json.dumps({"output": output}))
    record = {"entrypoint": ["python", "train.py"], "run_id": records, "artifacts": artifact_hashes(folder)}
    (folder / "run.json").write_text(json.dumps(record))
    return folder


def test_byo_results_decide_and_logs_are_only_reported(tmp_path):
    same = {
        "stdout.log": "42\n",
        "result.json": "{}",
        "eval/run.json": '{"acc": 0.91}',
        ".best.json": "0.91",
        "x.txt": "t",
    }
    a = make_byo_run(tmp_path / "a", same)
    c = compare_runs(a, make_byo_run(tmp_path / "b", same, records="other times and ids"))
    assert c.verdict == IDENTICAL and c.compared_files == 5  # reproexec's own records are not outputs
    for rel in ("result.json", "eval/run.json", ".best.json"):  # any result, nested or hidden, that differs
        c = compare_runs(a, make_byo_run(tmp_path / f"r{len(rel)}{rel[0]}", {**same, rel: "changed"}))
        assert c.verdict == DIFFERS and c.exit_code == 11 and c.first_divergence.where == f"file {rel}", rel
    c = compare_runs(a, make_byo_run(tmp_path / "logs", {**same, "stdout.log": "42\n0.8 s/it\n", "x.txt": "u"}))
    assert c.verdict == IDENTICAL and c.unequal_logs == ["stdout.log", "x.txt"]
    c = compare_runs(a, make_byo_run(tmp_path / "d", {**same, "extra.json": "new"}))
    assert c.verdict == DIFFERS and (c.first_divergence.where, c.first_divergence.a) == ("file extra.json", None)
    # the config says what is a result: here only *.json under eval/
    c = compare_runs(a, make_byo_run(tmp_path / "e", {**same, "result.json": "changed"}, results=["eval/*.json"]))
    assert c.verdict == IDENTICAL and [f["name"] for f in c.files if f["status"] != "identical"] == ["result.json"]


def test_checkpoints_are_compared_tensor_by_tensor(tmp_path):
    import io

    import torch

    def saved(state, **kw):
        buf = io.BytesIO()
        torch.save(state, buf, **kw)
        return buf.getvalue()

    state = {"model": {"fc.weight": torch.arange(6.0).reshape(2, 3), "fc.bias": torch.zeros(2)}, "epoch": 3}
    a = make_byo_run(tmp_path / "a", {"ckpt.pth": saved(state)})
    repickled = saved({"epoch": 3, "model": {"fc.bias": torch.zeros(2), "fc.weight": torch.arange(6.0).reshape(2, 3)}})
    assert repickled != saved(state)
    c = compare_runs(a, make_byo_run(tmp_path / "b", {"ckpt.pth": repickled}))
    assert c.verdict == IDENTICAL and c.files[0]["detail"].startswith("equal tensors")
    moved = {
        "model": {**state["model"], "fc.weight": state["model"]["fc.weight"] + torch.tensor([[0, 0, 0], [0, 0.25, 0]])},
        "epoch": 3,
    }
    c = compare_runs(a, make_byo_run(tmp_path / "c", {"ckpt.pth": saved(moved)}))
    assert c.verdict == DIFFERS
    assert c.first_divergence.metric == "tensor model.fc.weight: largest absolute difference 0.25"
    assert (
        compare_runs(a, make_byo_run(tmp_path / "d", {"ckpt.pth": saved(moved)}), {"model.fc.*": 0.3}).verdict == WITHIN
    )


def test_a_scripts_metrics_are_compared_row_by_row_and_give_the_final_metrics(tmp_path):
    rows = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5, "acc": 0.4}]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    a = make_byo_run(tmp_path / "a", {"metrics/metrics.jsonl": text})
    c = compare_runs(a, make_byo_run(tmp_path / "b", {"metrics/metrics.jsonl": text}))
    assert c.verdict == IDENTICAL and c.final == {"acc": (0.4, 0.4), "loss": (1.5, 1.5)} and c.compared_values == 3
    other = text.replace("1.5", "1.25")
    c = compare_runs(a, make_byo_run(tmp_path / "c", {"metrics/metrics.jsonl": other}))
    assert (c.verdict, c.first_divergence.where, c.first_divergence.metric) == (DIFFERS, "step 2", "loss")


def test_env_diff_marks_what_can_change_numbers():
    env = {
        "python": {"version": "3.11.2 (main)"},
        "packages": {"torch": "2.14.1", "PyYAML": "6.0.4"},
        "torch": {"intra_op_threads": 1, "cpu_capability": "AVX2"},
        "cpu": {"model_name": "AMD EPYC", "flags": ["avx2", "sse4_2"], "usable_cpus": [0, 1]},
        "os": {"release": "6.1", "glibc": "glibc-2.36"},
    }
    other = json.loads(json.dumps(env))
    other["packages"].update(torch="2.14.2", PyYAML="6.0.5")
    other["torch"]["intra_op_threads"] = 2
    other["cpu"].update(flags=["avx2", "avx512f", "sse4_2"], usable_cpus=[1])
    other["os"]["release"] = "6.8"
    rec = {"randomness": {"seed": 1, "determinism": {"threads": 1}}, "owner": {"host": "a"}}
    rec2 = {"randomness": {"seed": 1, "determinism": {"threads": 2}}, "owner": {"host": "b"}}
    diffs = diff_env(view_from_parts("A", env, rec), view_from_parts("B", other, rec2))
    got = {d.key: (d.a, d.b, d.numerics) for d in diffs}
    assert got == {
        "cpu.flags": ("—", "avx512f", True),
        "determinism.threads": ("1", "2", True),
        "package torch": ("2.14.1", "2.14.2", True),
        "torch.intra_op_threads": ("1", "2", True),
        "cpu.usable_cpus": ("0 1", "1", False),
        "host.name": ("a", "b", False),
        "os.release": ("6.1", "6.8", False),
        "package pyyaml": ("6.0.4", "6.0.5", False),
    }
    assert [d.numerics for d in diffs] == sorted((d.numerics for d in diffs), reverse=True)  # numerics first


def test_classification_of_the_issue_examples():
    assert classify("determinism.threads")[0] and classify("cuda.devices.0.name")[0]
    assert not classify("host.name")[0]
    assert diff_env(EnvView("a", {"x.y": "1"}), EnvView("b", {"x.y": "1"})) == []


def _pinned_env(flags, branch="COMPATIBLE", debs=None):
    return {
        "cpu": {"flags": flags},
        "cpu_math": {
            "aten": {"capability": "AVX2"},
            "mkl": {"available": True, "cnr_branch": branch},
            "onednn": {"available": True, "enabled": True, "isa": "Intel AVX2"},
        },
        "env": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "COMPATIBLE"},
        "debian_packages": debs or {"libc6": "2.36-9+deb12u10", "tzdata": "2025b-0+deb12u1", "python3": "3.11.2-1+b1"},
    }


def test_avx512_is_harmless_only_where_every_cpu_math_library_is_pinned():
    amd, intel = _pinned_env(["avx2", "fma", "sha_ni"]), _pinned_env(["avx2", "fma", "avx512f", "amx_tile"])
    (d,) = diff_env(view_from_parts("amd", amd, None), view_from_parts("intel", intel, None))
    assert (d.key, d.a, d.b, d.numerics) == ("cpu.flags", "sha_ni", "amx_tile avx512f", False)
    assert "pinned on both sides" in d.why

    # MKL_CBWR=AVX2 on an AMD CPU runs MKL's AUTO branch: MKL still dispatches by CPU there.
    auto = _pinned_env(["avx2", "fma"], branch="AUTO,STRICT")
    diffs = {d.key: d for d in diff_env(view_from_parts("amd", auto, None), view_from_parts("intel", intel, None))}
    assert diffs["cpu.flags"].numerics and diffs["cpu.flags"].why == (
        "CPU kernels dispatch on amx_tile, avx512f, and nothing pins MKL"
    )
    assert diffs["cpu_math.mkl.cnr_branch"].numerics  # the level MKL really ran at differs
    # Flags no math library dispatches on never change the numbers.
    (d,) = diff_env(
        view_from_parts("a", {"cpu": {"flags": ["sha_ni"]}}, None), view_from_parts("b", {"cpu": {"flags": []}}, None)
    )
    assert d.numerics is False


def test_env_diff_names_the_debian_packages_when_the_base_moved_on():
    old = _pinned_env(["avx2"])
    new = _pinned_env(
        ["avx2"],
        debs={"libc6": "2.36-9+deb12u13", "tzdata": "2025c-0+deb12u1", "python3": "3.11.2-1+b1", "libnew1": "1.0-1"},
    )
    got = {
        d.key: (d.a, d.b, d.numerics)
        for d in diff_env(view_from_parts("A", old, None), view_from_parts("B", new, None))
    }
    assert got == {
        "deb libc6": ("2.36-9+deb12u10", "2.36-9+deb12u13", True),  # glibc's libm computes for the trainer
        "deb libnew1": ("—", "1.0-1", False),
        "deb tzdata": ("2025b-0+deb12u1", "2025c-0+deb12u1", False),
    }


def test_a_rebuild_of_the_same_content_tag_is_not_a_numerics_difference():
    """Machine B rebuilt the recorded tag: another image id, the same inputs. Not a false alarm."""

    def view(label, image_id, content):
        return view_from_parts(label, {}, {"image": {"id": image_id, "content_hash": content}})

    same = diff_env(view("a", "sha256:" + "1" * 64, "c" * 64), view("b", "sha256:" + "2" * 64, "c" * 64))
    assert [(d.key, d.numerics) for d in same] == [("image.id", False)]
    assert "same content tag" in same[0].why
    other = diff_env(view("a", "sha256:" + "1" * 64, "c" * 64), view("b", "sha256:" + "2" * 64, "d" * 64))
    assert {(d.key, d.numerics) for d in other} == {("image.id", True), ("image.content_hash", True)}


# -- what a run or a bundle wrote is read, never trusted to be well-formed ------------------------
DEEP = "[" * 200_000 + "]" * 200_000


@pytest.mark.parametrize("summary", ["[1, 2]", DEEP, '{"weights_sha256": ' + "[" * 990 + "]" * 990 + "}"])
def test_a_summary_that_is_not_an_object_is_no_summary(tmp_path, summary):
    from reproexec.runs.compare import final_metrics

    a = make_byo_run(tmp_path / "a", {"metrics/metrics.jsonl": '{"step": 1, "acc": 0.5}\n'})
    (a / "summary.json").write_text(summary)  # a bring-your-own script writes what it likes
    assert final_metrics(a) == {"acc": 0.5}  # the script's metrics, as without a summary
    b = make_byo_run(tmp_path / "b", {"metrics/metrics.jsonl": '{"step": 1, "acc": 0.5}\n'})
    c = compare_runs(a, b)
    assert c.verdict == IDENTICAL and c.weights == (None, None) and c.final == {"acc": (0.5, 0.5)}
    json.dumps(c.to_dict())  # comparison.json can be written


def test_a_bad_metrics_line_keeps_the_other_rows_and_is_named(tmp_path):
    from reproexec.runs.compare import read_final_metrics

    text = '{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n[3]\n{"step": 3, "loss": 1.0}\n\x00garbage{{\n'
    a = make_byo_run(tmp_path / "a", {"metrics/metrics.jsonl": text})
    assert read_final_metrics(a) == (
        {"loss": 1.0},
        "metrics.jsonl line 3 is not a JSON object (the other rows were kept)",
    )
    c = compare_runs(a, make_byo_run(tmp_path / "b", {"metrics/metrics.jsonl": text}))
    assert c.verdict == IDENTICAL and c.final == {"loss": (1.0, 1.0)} and c.compared_values == 3
    assert c.unread == [f"{run}: metrics.jsonl line 3 is not a JSON object (the other rows were kept)" for run in "ab"]


def test_a_linked_metrics_file_is_not_followed(tmp_path):
    from reproexec.runs.compare import read_final_metrics

    secret = tmp_path / "elsewhere.jsonl"
    secret.write_text('{"step": 1, "loss": 0.25}\n')
    a = make_byo_run(tmp_path / "a", {})
    (a / "metrics").mkdir()
    (a / "metrics" / "metrics.jsonl").symlink_to(secret)
    final, problem = read_final_metrics(a)
    assert final == {} and problem.startswith("metrics.jsonl: ")  # ELOOP, in the system's words
    c = compare_runs(a, make_byo_run(tmp_path / "b", {}))
    assert c.unread == [f"a: {problem}"] and c.verdict == IDENTICAL


def test_a_scripts_deep_structures_in_a_row_are_no_position_and_no_metric(tmp_path):
    deep = "{" + '"a": {' * 500 + '"x": 1' + "}" * 501  # a metric is at most 8 levels deep
    row = '{"step": ' + "[" * 500 + "]" * 500 + ', "loss": 1.0, "deep": ' + deep + "}\n"
    a = make_byo_run(tmp_path / "a", {"metrics/metrics.jsonl": row})
    c = compare_runs(a, make_byo_run(tmp_path / "b", {"metrics/metrics.jsonl": row.replace("1.0", "2.0")}))
    assert (c.verdict, c.first_divergence.where, c.first_divergence.metric) == (DIFFERS, "row 1", "loss")
    assert c.compared_values == 1


def _bundle(path, run_json: bytes, environment: bytes | None = None):
    import io
    import tarfile

    run_id = "2026-11-24_resnet18_digits_abcdef"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in (("run.json", run_json), ("environment.json", environment)):
            if data is not None:
                info = tarfile.TarInfo(f"{run_id}/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


RECORD = {
    "schema": 1,
    "run_id": "2026-11-24_resnet18_digits_abcdef",
    "status": "succeeded",
    "started_at": "2026-11-24T10:00:00+00:00",
    "reproexec_version": "0.1.0",
    "randomness": {"seed": 7},
}


def test_env_diff_of_a_hostile_bundle_is_refused_cleanly(tmp_path):
    from typer.testing import CliRunner

    from reproexec.cli.app import app
    from reproexec.runs.envdiff import view_of_bundle

    deep = _bundle(tmp_path / "deep.tar.gz", b"[" * 100_000 + b"]" * 100_000)
    r = CliRunner().invoke(app, ["env", "diff", str(deep), str(deep)])
    assert r.exit_code == 7, r.output
    assert (
        f"error: {deep}:2026-11-24_resnet18_digits_abcdef/run.json is not valid JSON: maximum recursion depth"
        in r.stderr
    )
    assert "Traceback" not in r.output
    # environment.json is only read: a list, a deep nesting or a section of the wrong type counts as missing
    for env in (
        b"[1]",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"python": "3.11", "packages": [1], "cpu": ' + b"[" * 200 + b"]" * 200 + b"}",
    ):
        view = view_of_bundle(_bundle(tmp_path / "b.tar.gz", json.dumps(RECORD).encode(), env))
        assert view.values.get("seed") == "7" and "python.version" not in view.values
    assert view.values["cpu" + ".0" * 8] == "(nested deeper than 8 levels)"
    damaged = tmp_path / "damaged.tar.gz"
    damaged.write_bytes(_bundle(tmp_path / "c.tar.gz", json.dumps(RECORD).encode()).read_bytes()[:40])
    with pytest.raises(
        ReproexecError, match="(?s)cannot be read: .*Fix: the file is damaged, truncated or not a tar archive"
    ):
        view_of_bundle(damaged)


class _ImageEngine:
    """An engine with one image, whose containers fail as Docker fails them."""

    def __init__(self, result=None, error=None):
        from reproexec.engine import ImageInfo

        self.info = ImageInfo(id="sha256:" + "1" * 64, tags=("debian:12",), repo_digests=(), labels={}, layers=())
        self.result, self.error = result, error

    def image(self, ref):
        return self.info

    def run_capture(self, image, command, *, network=False):
        if self.error:
            raise self.error
        return self.result


@pytest.mark.parametrize(
    "engine, detail",
    [
        (
            _ImageEngine(
                error=EngineError(
                    'Docker could not run the container: exec: "python": executable file not found in $PATH'
                )
            ),
            'exec: "python": executable file not found in $PATH',
        ),
        (
            _ImageEngine(result=ContainerResult(1, "ModuleNotFoundError: No module named 'reproexec'\n")),
            "No module named 'reproexec'",
        ),
        (_ImageEngine(result=ContainerResult(0, "hello\n")), "hello"),
    ],
)
def test_env_diff_of_an_image_without_reproexec_names_the_image(monkeypatch, engine, detail):
    from typer.testing import CliRunner

    from reproexec import engine as engine_module
    from reproexec.cli.app import app

    monkeypatch.setattr(engine_module, "connect", lambda: engine)
    r = CliRunner().invoke(app, ["env", "diff", "debian:12", "debian:12"])
    assert r.exit_code == 1, r.output
    assert (
        "error: could not read the environment inside image debian:12: it needs a `python` that can import reproexec"
    ) in r.stderr
    assert detail in r.stderr and "Fix: pass a run image" in r.stderr and "Traceback" not in r.output
