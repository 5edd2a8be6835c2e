"""`reproexec base bootstrap` is reproducible: two bootstraps (here at once, each with its own empty
cache, so nothing is shared) give the same rootfs tar and the same layer diff_id; only the image ids
differ (`docker import` stamps the time). Uses its own tags, never the default base."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile

from needs import require

from reproexec.labels import LABEL_PACKAGES, LABEL_ROOTFS

TAGS = ("wt10-base:repro-a", "wt10-base:repro-b")


def test_two_bootstraps_give_the_same_layer(docker_engine, tmp_path):
    if shutil.which("mmdebstrap") is None:
        require("mmdebstrap (Debian package)", "it is not installed")
    caches = [tmp_path / f"cache-{i}" for i in range(len(TAGS))]
    try:
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "reproexec", "base", "bootstrap", "--tag", tag],
                env={**os.environ, "REPROEXEC_CACHE": str(cache)},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for tag, cache in zip(TAGS, caches, strict=True)
        ]
        for proc in procs:
            out, err = proc.communicate(timeout=900)
            assert proc.returncode == 0, err[-3000:]
        a, b = (docker_engine.image(tag) for tag in TAGS)
        assert len(a.layers) == 1 and a.layers == b.layers and a.id != b.id
        digest = a.layers[0].removeprefix("sha256:")
        assert a.labels[LABEL_ROOTFS] == digest and "python3=" in a.labels[LABEL_PACKAGES]
        assert out.strip().splitlines()[-1] == b.id  # the CLI prints the image id last
        for cache in caches:  # each kept the tar, gzipped, under the layer's diff_id
            with gzip.open(cache / "rootfs" / f"{digest}.tar.gz") as f:
                data = f.read()
            assert hashlib.sha256(data).hexdigest() == digest
        with tarfile.open(caches[0] / "rootfs" / f"{digest}.tar.gz") as tar:
            names = set(tar.getnames())
            sources = tar.extractfile("./etc/apt/sources.list").read().decode()
        assert "./etc/machine-id" not in names and "./var/log/dpkg.log" not in names
        assert not [n for n in names if n.startswith("./var/lib/apt/lists/") and n.endswith("Packages")]
        assert sources == "deb http://deb.debian.org/debian bookworm main\n"  # not this host's mirror
    finally:
        for tag in TAGS:
            docker_engine.remove_image(tag)
