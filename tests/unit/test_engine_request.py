"""The container request DockerEngine sends: checked on a mock with docker-py's own interface
(the HostConfig is docker-py's real one, so what is asserted is what the engine receives)."""

from unittest.mock import MagicMock

import docker
import pytest

from reproexec.engine import ContainerSpec, DockerEngine, Mount


def _engine():
    client = MagicMock(spec=docker.DockerClient)
    client.api = MagicMock(spec=docker.APIClient)
    client.api.create_host_config.side_effect = lambda **kw: docker.types.HostConfig(version="1.41", **kw)
    client.api.create_container.return_value = {"Id": "c0ffee"}
    return DockerEngine(client), client


def test_run_container_is_hardened():
    engine, client = _engine()
    spec = ContainerSpec(
        image="reproexec-env:x",
        command=("python", "-m", "reproexec.runtime.guard", "--", "python", "-m", "reproexec.runtime.train"),
        mounts=(Mount("/snap", "/data", read_only=True), Mount("/runs/.staging/r1", "/run", read_only=False)),
        environment={"OMP_NUM_THREADS": "1"},
        user="1000:1000",
        memory="8g",
        cpus=1.5,
        cpuset="1",
        shm_size="1g",
        pids_limit=512,
        labels={"org.reproexec.run-id": "r1"},
        name="reproexec-r1-abcd",
        guard_stdin=True,
    )
    handle = engine.start(spec)
    kw = client.api.create_container.call_args.kwargs
    hc = kw["host_config"]
    assert kw["network_disabled"] is True and hc["NetworkMode"] == "none"
    assert hc["CapDrop"] == ["ALL"] and hc["SecurityOpt"] == ["no-new-privileges"]
    assert hc["ReadonlyRootfs"] is True and hc["Init"] is True and "nosuid" in hc["Tmpfs"]["/tmp"]
    assert kw["user"] == "1000:1000" and hc["PidsLimit"] == 512 and hc["ShmSize"] == 1024**3
    assert (
        hc["Memory"] == hc["MemorySwap"] == 8 * 1024**3 and hc["NanoCpus"] == 1_500_000_000 and hc["CpusetCpus"] == "1"
    )
    mounts = {m["Target"]: (m["Source"], m["ReadOnly"]) for m in hc["Mounts"]}
    assert mounts == {"/data": ("/snap", True), "/run": ("/runs/.staging/r1", False)}
    assert "DeviceRequests" not in hc or not hc["DeviceRequests"]
    # stdin stays attached (StdinOnce), so a host that dies closes it and the guard stops the run
    assert kw["stdin_open"] is True and kw["detach"] is False
    assert kw["labels"] == {"org.reproexec.run-id": "r1"} and kw["name"] == "reproexec-r1-abcd"
    client.api.attach_socket.assert_called_once_with("c0ffee", params={"stdin": 1, "stream": 1})
    client.api.start.assert_called_once_with("c0ffee")
    assert handle.id == "c0ffee"


def test_gpu_run_asks_the_engine_for_gpus():
    engine, client = _engine()
    engine.start(ContainerSpec(image="i", command=("true",), gpus=True))
    (request,) = client.api.create_container.call_args.kwargs["host_config"]["DeviceRequests"]
    assert request["Count"] == -1 and request["Capabilities"] == [["gpu"]]


@pytest.mark.parametrize("fails_at", ["attach_socket", "start"])
@pytest.mark.parametrize("error", [KeyboardInterrupt(), docker.errors.APIError("boom")])
def test_a_container_that_could_not_start_is_removed(fails_at, error):
    engine, client = _engine()
    getattr(client.api, fails_at).side_effect = error
    with pytest.raises((KeyboardInterrupt, Exception)):
        engine.start(ContainerSpec(image="i", command=("true",), name="reproexec-x", guard_stdin=True))
    client.api.remove_container.assert_called_once_with("c0ffee", force=True)


def test_interrupted_while_creating_removes_it_by_name():
    engine, client = _engine()
    client.api.create_container.side_effect = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        engine.start(ContainerSpec(image="i", command=("true",), name="reproexec-x"))
    client.api.remove_container.assert_called_once_with("reproexec-x", force=True)
