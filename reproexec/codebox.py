"""The Code box: which code a run used. A `CodeState` is one of three kinds:

- "git": in a git work tree, the commit, and every uncommitted change as a patch (tracked changes
  from `git diff HEAD --binary`, untracked files as new-file diffs), so `git apply` on the commit
  restores the exact tree;
- "folder": outside git, a sha256 over the folder's files;
- "code.tar": a rerun of a bring-your-own run runs the original run's code.tar (see below), and
  that file is its code.
The run store itself is left out.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from reproexec.errors import RunError
from reproexec.fsutil import relpath_problem

if TYPE_CHECKING:
    from reproexec.env.context import ContextEntry

MAX_UNTRACKED_BYTES = 5_000_000  # larger untracked files are listed, not copied into the patch


@dataclass(frozen=True)
class CodeState:
    kind: str  # "git" | "folder" | "code.tar"
    root: str
    commit: str | None = None
    branch: str | None = None
    dirty: bool = False
    patch: str = ""
    untracked: list[str] = field(default_factory=list)
    skipped_untracked: list[str] = field(default_factory=list)
    tree_sha256: str | None = None

    @property
    def patch_sha256(self) -> str:
        return hashlib.sha256(self.patch.encode()).hexdigest()

    def record(self) -> dict:
        d = asdict(self)
        d.pop("patch")
        d["patch_sha256"] = self.patch_sha256 if self.patch else None
        return d


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout


def capture_code(folder: Path, *, exclude: list[Path] = ()) -> CodeState:
    folder = folder.resolve()
    try:
        root = Path(_git(folder, "rev-parse", "--show-toplevel").strip())
    except (subprocess.CalledProcessError, FileNotFoundError):
        return CodeState(kind="folder", root=str(folder), tree_sha256=folder_hash(folder, exclude=exclude))
    try:
        commit = _git(root, "rev-parse", "HEAD").strip()
    except subprocess.CalledProcessError:  # a repository without commits: nothing is committed yet
        return CodeState(kind="git", root=str(root), dirty=True, tree_sha256=folder_hash(folder, exclude=exclude))
    excluded = [str(p.resolve().relative_to(root)) for p in exclude if _inside(p.resolve(), root)]
    branch = _git(root, "rev-parse", "--abbrev-ref", "HEAD").strip()
    patch = _git(root, "diff", "HEAD", "--binary", "--no-color", "--no-ext-diff")
    untracked, skipped = [], []
    for rel in _git(root, "ls-files", "--others", "--exclude-standard", "-z").split("\0"):
        if not rel or any(rel == e or rel.startswith(e.rstrip("/") + "/") for e in excluded):
            continue
        if (root / rel).stat().st_size > MAX_UNTRACKED_BYTES:
            skipped.append(rel)
            continue
        untracked.append(rel)
        diff = subprocess.run(
            ["git", "diff", "--no-index", "--binary", "--no-color", "/dev/null", rel],
            cwd=root,
            capture_output=True,
            text=True,
        )  # exit 1 means "differs", which is the point
        patch += diff.stdout
    return CodeState(
        kind="git",
        root=str(root),
        commit=commit,
        branch=branch,
        dirty=bool(patch) or bool(skipped),
        patch=patch,
        untracked=sorted(untracked),
        skipped_untracked=sorted(skipped),
    )


def code_of_tar(code_tar: Path) -> CodeState:
    """The code state of a rerun that runs an earlier run's code.tar (and its code.patch record)."""
    from reproexec.fsutil import sha256_file

    patch = code_tar.parent / "code.patch"
    return CodeState(
        kind="code.tar",
        root=str(code_tar.parent),
        tree_sha256=sha256_file(code_tar),
        patch=patch.read_text(encoding="utf-8") if patch.is_file() else "",
    )


def require_clean(code: CodeState) -> None:
    if code.dirty:
        changed = code.untracked[:5] + code.skipped_untracked[:5]
        raise RunError(
            f"the work tree {code.root} has uncommitted changes and --require-clean was given",
            "commit or stash them (git status shows them), or drop --require-clean to record them as a patch",
            details=[f"untracked: {u}" for u in changed] or ["tracked files differ from HEAD (git diff HEAD)"],
        )


def folder_hash(folder: Path, *, exclude: list[Path] = ()) -> str:
    """The code of a folder outside git: _version.tree_sha256 (the hash of reproexec's own sources
    too) over its regular files, streamed; symlinks, __pycache__ and `exclude` (the run store) are
    left out. RunError naming a file that cannot be read."""
    from reproexec._version import tree_sha256

    excluded = {p.resolve() for p in exclude}
    rels: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if d != "__pycache__" and (here / d).resolve() not in excluded]
        prefix = here.relative_to(folder).as_posix() + "/" if here != folder else ""
        rels += [prefix + n for n in filenames if stat.S_ISREG(_lstat_mode(here / n))]
    try:
        return tree_sha256(folder, rels)
    except OSError as e:
        raise RunError(
            f"cannot hash {e.filename or folder} for the run's code record: {e.strerror or e}",
            "outside git every file in the config's folder is the run's code: make it readable, or move it out "
            "(or put the folder under git)",
        ) from None


def _lstat_mode(path: Path) -> int:
    try:
        return os.lstat(path).st_mode
    except OSError:  # gone meanwhile: not part of the code
        return 0


def _inside(p: Path, root: Path) -> bool:
    try:
        p.relative_to(root)
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------
# code.tar: the files a bring-your-own entrypoint ran (Docker runtime), kept in its run folder. The
# code image is built from it, for the run and for any rerun, so a rerun needs no work tree: the
# same bytes give the same image.

CODE_TAR = "code.tar"
MAX_CODE_FILES = 50_000
MAX_CODE_BYTES = 512 * 1024**2  # all files together; data and weights belong elsewhere
_KEEP_OUT = "keep data, outputs and caches out of the code folder (.gitignore them), or snapshot them as the dataset"


def work_tree_files(code: CodeState, *, exclude: list[Path] = ()) -> list[str]:
    """The files a BYO run gets, checked for code.tar: in git, tracked and untracked-not-ignored
    files; elsewhere every file but __pycache__. Symlinks, `exclude` (the run store) and skipped
    large untracked files are left out. RunError (before any run folder exists) if a name cannot
    be carried or the tree is over the limits."""
    root = Path(code.root)
    if code.kind == "git":
        out = _git(root, "ls-files", "--cached", "--others", "--exclude-standard", "-z")
        rels = [r for r in out.split("\0") if r and (root / r).is_file() and not (root / r).is_symlink()]
    else:
        rels = [
            p.relative_to(root).as_posix()
            for p in root.rglob("*")
            if p.is_file() and not p.is_symlink() and "__pycache__" not in p.relative_to(root).parts
        ]
    skipped = set(code.skipped_untracked)
    excluded = [p.resolve() for p in exclude]
    rels = sorted(r for r in rels if r not in skipped and not any(_inside((root / r).resolve(), p) for p in excluded))
    bad = [f"{r!r}: {why}" for r in rels if (why := _name_problem(r))]
    total = sum((root / r).stat().st_size for r in rels)
    if len(rels) > MAX_CODE_FILES or total > MAX_CODE_BYTES:
        bad.append(f"{len(rels):,} files, {total:,} bytes (limits: {MAX_CODE_FILES:,} files, {MAX_CODE_BYTES:,} bytes)")
    if bad:
        raise RunError(
            f"the code folder {root} cannot be kept as the run's {CODE_TAR}",
            _KEEP_OUT + "; rename odd files",
            details=bad[:20],
        )
    return rels


def write_code_tar(root: Path, rels: list[str], path: Path) -> None:
    """A normalized tar of the files (sorted, mtime 0, owner 0), streamed from disk and written
    atomically: the same files give the same bytes."""
    from reproexec.env.context import ContextEntry, write_context
    from reproexec.fsutil import open_atomic, sha256_file

    entries = [ContextEntry.from_file(rel, root / rel, sha256_file(root / rel)) for rel in rels]
    with open_atomic(path) as f:
        write_context(entries, f)


def read_code_tar(path: Path) -> list[ContextEntry]:
    """The files of a run's code.tar, checked as untrusted input (a run may come from a bundle):
    only what write_code_tar writes (plain files and their folders, normalized relative names,
    each once) within the limits; RunError naming every problem otherwise."""
    import tarfile

    from reproexec.env.context import ContextEntry

    entries: list[ContextEntry] = []
    problems: list[str] = []
    names: set[str] = set()
    dirs: set[str] = set()
    total = members = 0
    try:
        with tarfile.open(path, "r:") as tar:
            for m in tar:
                members += 1
                name = m.name
                if members > 2 * MAX_CODE_FILES or total + m.size > MAX_CODE_BYTES:
                    problems.append(f"more than {MAX_CODE_FILES:,} files or {MAX_CODE_BYTES:,} bytes")
                    break
                why = _name_problem(name)
                if why:
                    problems.append(f"{name!r}: {why}")
                elif m.type == tarfile.DIRTYPE:
                    dirs.add(name)
                elif m.type not in (tarfile.REGTYPE, tarfile.AREGTYPE) or m.sparse is not None:
                    problems.append(f"{name!r}: links, sparse and special files are not code")
                elif name in names:
                    problems.append(f"{name!r}: listed twice")
                else:
                    names.add(name)
                    src = tar.extractfile(m)
                    assert src is not None
                    entries.append(ContextEntry.from_bytes(name, src.read()))
                    total += m.size
                if len(problems) >= 20:
                    break
    except (tarfile.TarError, OSError, EOFError) as e:
        raise RunError(f"{path} cannot be read: {e}", "the run folder is damaged; export the run again") from None
    folders = dirs.union(*(_parents(n) for n in names))
    clashes = sorted(names & folders)  # "a" as a file and as the folder of "a/b.py"
    problems += [f"{n!r}: both a file and a folder" for n in clashes]
    if problems:
        raise RunError(
            f"{path} is refused: it is not a code snapshot reproexec wrote",
            "only rerun runs made (or exported) by reproexec",
            details=problems[:20],
        )
    return entries


def _name_problem(name: str) -> str | None:
    problem = relpath_problem(name)
    return f"not a normalized relative path inside the code folder ({problem})" if problem else None


def _parents(name: str) -> set[str]:
    parts = name.split("/")
    return {"/".join(parts[:i]) for i in range(1, len(parts))}
