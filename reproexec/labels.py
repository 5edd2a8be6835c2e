"""The names reproexec gives things in Docker, and how it tells who owns a container: one home.

Repositories (what reproexec tags), labels (what it writes on images and containers), and the
owner identity a run container or a build's wheel server carries, so a later reproexec can tell
that the process which started it is gone (killed, even by SIGKILL) and clean up after it.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

# -- repositories ----------------------------------------------------------------------------------
ENV_REPOSITORY = "reproexec-env"  # run images: tagged only by build_image, after the build was checked
# An image loaded from a --with-image bundle, under its recorded content hash: never reproexec-env,
# so a bundle cannot plant the image a later build of the same inputs would take as its cache hit.
BUNDLE_REPOSITORY = "reproexec-bundle"
CODE_REPOSITORY = "reproexec-code"  # a bring-your-own run's image: the run image plus its code.tar
# Local bases are tagged here by content id right before a build, so FROM names the same on every machine.
BASE_CONTENT_REPOSITORY = "reproexec-base-content"
# A base imported from a rootfs tar that came from elsewhere (a bundle, the cache) is tagged by its
# checked sha256 here, never under a name the bundle chose.
ROOTFS_REPOSITORY = "reproexec-base-rootfs"
DEFAULT_BASE = "reproexec-base:bookworm"  # what `reproexec base bootstrap` makes

# -- labels on images --------------------------------------------------------------------------------
LABEL_HASH = "org.reproexec.content-hash"
LABEL_INPUTS = "org.reproexec.hash-inputs"
LABEL_FREEZE = "org.reproexec.pip-freeze"
LABEL_CODE = "org.reproexec.code-sha256"
LABEL_ROOTFS = "org.reproexec.base.rootfs-sha256"
LABEL_PACKAGES = "org.reproexec.base.debian-packages"
LABEL_SUITE = "org.reproexec.base.suite"  # set on a bootstrapped base, inherited by every build stage on it
LABEL_MIRROR = "org.reproexec.base.mirror"
LABEL_EPOCH = "org.reproexec.base.source-date-epoch"

# -- labels on containers ----------------------------------------------------------------------------
LABEL_RUN = "org.reproexec.run-id"
LABEL_RUN_DIR = "org.reproexec.run-dir"
LABEL_BUILD_SERVER = "org.reproexec.build-server"  # the wheel server of a build in progress
LABEL_OWNER = "org.reproexec.owner"  # json of this_process() of the reproexec that started the container


# -- the owner -----------------------------------------------------------------------------------------
def this_process() -> dict[str, Any]:
    """Who owns a run: host, boot, pid and the pid's start time, so a reused pid is not the owner."""
    return {"host": socket.gethostname(), "boot": _boot_id(), "pid": os.getpid(), "started": _start_ticks(os.getpid())}


def owner_is_gone(owner: dict[str, Any]) -> bool:
    """True only when this host can tell the owner process has exited (False when unsure)."""
    if owner.get("host") != socket.gethostname() or not isinstance(owner.get("pid"), int):
        return False  # another machine's run: cannot tell from here
    if owner.get("boot") is not None and owner.get("boot") != _boot_id():
        return True  # the machine rebooted since
    try:
        os.kill(owner["pid"], 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    started = owner.get("started")
    return started is not None and started != _start_ticks(owner["pid"])


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])  # field 22: starttime, after "pid (comm)"
    except (OSError, IndexError, ValueError):
        return None
