import json
import os
import socket
import subprocess

import pytest

from reproexec.errors import RunError
from reproexec.runs.store import create_run_dir, list_runs, load_run, make_run_id


def test_run_ids_are_readable_and_unique(tmp_path):
    import datetime as dt

    rid = make_run_id("resnet18", "digits demo/v1", "a1b2c3d4e5", dt.date(2026, 11, 24))
    assert rid == "2026-11-24_resnet18_digits-demo-v1_a1b2c3"
    first, _ = create_run_dir(tmp_path, rid)
    second, _ = create_run_dir(tmp_path, rid)
    assert (first, second) == (rid, f"{rid}-2")


def test_a_run_whose_process_died_is_shown_as_stale(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    for name, pid in (("alive", os.getpid()), ("dead", dead.pid)):
        d = tmp_path / name
        d.mkdir()
        owner = {"host": socket.gethostname(), "pid": pid}
        (d / "run.json").write_text(json.dumps(record(name, status="running", owner=owner)))
    status = {r.run_id: r.status for r in list_runs(tmp_path)}
    assert status == {"alive": "running", "dead": "interrupted (stale)"}


def record(run_id, **changes):
    return {
        "schema": 1,
        "run_id": run_id,
        "status": "succeeded",
        "started_at": "2026-11-24T10:00:00+00:00",
        "reproexec_version": "0.1.0",
        **changes,
    }


def test_a_reused_pid_is_not_the_owner(tmp_path):
    from reproexec.labels import owner_is_gone, this_process

    me = this_process()
    assert not owner_is_gone(me)
    assert owner_is_gone({**me, "started": me["started"] + 1})  # same pid, another process
    assert owner_is_gone({**me, "boot": "another-boot"})
    assert not owner_is_gone({**me, "host": "another-machine"})  # cannot tell from here


def test_a_broken_run_json_is_listed_as_unreadable_and_does_not_break_the_list(tmp_path):
    for name, doc in {"good": record("good"), "five": record("five", started_at=5), "list": [1]}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "run.json").write_text(json.dumps(doc))
    status = {r.path.name: r.status for r in list_runs(tmp_path)}
    assert status["good"] == "succeeded"
    assert status["five"] == status["list"] == "unreadable run.json (is not a valid run.json)"
    with pytest.raises(RunError) as e:
        load_run("five", tmp_path)
    assert "started_at: Input should be a valid string" in e.value.details


def test_unknown_run_lists_the_latest_ids(tmp_path):
    (tmp_path / "r1").mkdir()
    (tmp_path / "r1" / "run.json").write_text(json.dumps(record("r1")))
    with pytest.raises(RunError) as e:
        load_run("nope", tmp_path)
    assert e.value.message == f"no run 'nope' in {tmp_path}" and "latest: r1" in e.value.hint


def test_a_wheel_server_left_by_a_killed_build_is_reaped_and_a_live_ones_is_not():
    from reproexec.engine import ContainerInfo
    from reproexec.labels import LABEL_BUILD_SERVER, LABEL_OWNER, this_process
    from reproexec.runs.reap import reap_orphans

    dead = subprocess.Popen(["true"])
    dead.wait()
    gone = {**this_process(), "pid": dead.pid, "started": None}

    class Engine:
        removed: list[str] = []

        def containers(self, label):
            if label != LABEL_BUILD_SERVER:
                return []
            return [
                ContainerInfo("c-dead", {LABEL_BUILD_SERVER: "1", LABEL_OWNER: json.dumps(gone)}),
                ContainerInfo("c-live", {LABEL_BUILD_SERVER: "1", LABEL_OWNER: json.dumps(this_process())}),
            ]

        def remove_container(self, ref):
            self.removed.append(ref)

    engine = Engine()
    notes = reap_orphans(engine)
    assert engine.removed == ["c-dead"]
    assert notes == [f"removed a build's wheel server: the reproexec process that started it (pid {dead.pid}) is gone"]
