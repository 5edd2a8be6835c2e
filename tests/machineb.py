"""A second Docker engine on this host plays "another machine": its own data root (no images, no
build cache), exec root, socket and pidfile, no bridge. Tests point a client at it through
DOCKER_HOST; reproexec sees an engine that shares nothing with the first one."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class SecondEngine:
    root: Path
    host: str  # DOCKER_HOST value
    proc: subprocess.Popen

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        subprocess.run(["umount", "-R", "-l", str(self.root)], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def start_second_engine() -> SecondEngine:
    """Start `dockerd` beside the first one and wait until it answers (RuntimeError if it does not)."""
    if shutil.which("dockerd") is None:
        raise RuntimeError("dockerd is not installed")
    root = Path(tempfile.mkdtemp(prefix="rxb-", dir="/tmp"))  # short: unix socket paths are limited
    sock = root / "d.sock"
    log = open(root / "dockerd.log", "w")
    proc = subprocess.Popen(
        [
            "dockerd",
            "--data-root",
            str(root / "data"),
            "--exec-root",
            str(root / "exec"),
            "--host",
            f"unix://{sock}",
            "--pidfile",
            str(root / "d.pid"),
            "--bridge",
            "none",
            "--iptables=false",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    engine = SecondEngine(root, f"unix://{sock}", proc)
    env = {**os.environ, "DOCKER_HOST": engine.host}
    for _ in range(120):
        if proc.poll() is not None:
            break
        if subprocess.run(["docker", "info"], env=env, capture_output=True).returncode == 0:
            return engine
        time.sleep(0.5)
    tail = (root / "dockerd.log").read_text(errors="replace")[-2000:]
    engine.stop()
    raise RuntimeError(f"the second dockerd did not answer within 60 s: {tail}")
