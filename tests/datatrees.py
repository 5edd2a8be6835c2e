"""Small file trees for data-box tests."""

from __future__ import annotations

from pathlib import Path


def make_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)
    return root
