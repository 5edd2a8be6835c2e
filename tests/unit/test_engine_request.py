"""The container request DockerEngine sends: checked on a mock with docker-py's own interface."""

from unittest.mock import MagicMock

import docker
import pytest

from reproexec.engine import ContainerSpec, DockerEngine, Mount

pytestmark = pytest.mark.unit


def _engine():
    client = MagicMock(spec=docker.DockerClient)
    client.api = MagicMock(spec=docker.APIClient)
    client.containers = MagicMock()
    return DockerEngine(client), client


def test_run_container_is_hardened():
    engine, client = _engine()
    spec = ContainerSpec(
        image="reproexec-env:x",
        command=("python", "-m", "reproexec.runtime.train"),
        mounts=(Mount("/snap", "/data", read_only=True), Mount("/runs/r1", "/run", read_only=False)),
        environment={"OMP_NUM_THREADS": "1"},
        user="1000:1000",
        memory="8g",
        cpus=1.5,
        cpuset="1",
        shm_size="1g",
        pids_limit=512,
    )
    engine.start(spec)
    kw = client.containers.create.call_args.kwargs
    assert kw["network_disabled"] is True and kw["network_mode"] == "none"
    assert kw["cap_drop"] == ["ALL"] and kw["security_opt"] == ["no-new-privileges"]
    assert kw["read_only"] is True and kw["init"] is True and "/tmp" in kw["tmpfs"]
    assert kw["user"] == "1000:1000" and kw["pids_limit"] == 512 and kw["shm_size"] == "1g"
    assert kw["mem_limit"] == kw["memswap_limit"] == "8g" and kw["nano_cpus"] == 1_500_000_000 and kw["cpuset_cpus"] == "1"
    mounts = {m["Target"]: (m["Source"], m["ReadOnly"]) for m in kw["mounts"]}
    assert mounts == {"/data": ("/snap", True), "/run": ("/runs/r1", False)}
    assert kw["device_requests"] is None


def test_gpu_run_asks_the_engine_for_gpus():
    engine, client = _engine()
    engine.start(ContainerSpec(image="i", command=("true",), gpus=True))
    (request,) = client.containers.create.call_args.kwargs["device_requests"]
    assert request["Count"] == -1 and request["Capabilities"] == [["gpu"]]
