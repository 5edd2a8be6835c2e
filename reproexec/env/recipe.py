"""A run image's recipe: what its build was given, kept with the run, so that any later reproexec
rebuilds the recorded image instead of one made from its own source.

`recipe/` in a run folder holds the build context exactly as it was sent to Docker: the rendered
Dockerfile, the lockfile (and the lockfile of its large wheels), reproexec's own wheel and its
hashed requirement line. run.json lists each with its sha256 (`image.hash_inputs.context`, and the
artifacts). The lockfile's wheels are not kept (gigabytes): they come from the wheel cache or the
package index and must have the recorded sha256s. The base is found by its recorded layers.

`plan_from_recipe` turns a recorded image into a BuildPlan without rendering anything: the recorded
hash inputs are hashed as they are, and every piece is checked against them first. So a newer
reproexec — another hash schema, another Dockerfile template, another wheel of its own — rebuilds
the recorded tag, and inside it the recorded reproexec trains. What cannot be found is named, with
how to bring it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reproexec.engine import Engine
from reproexec.env.build import BuildPlan, probe_target
from reproexec.env.context import ContextEntry
from reproexec.env.lock import parse_lock
from reproexec.env.spec import ImageSpec, build_context, content_hash, image_tag
from reproexec.env.wheels import Wheel
from reproexec.errors import BuildError, LockError, RunError
from reproexec.fsutil import cache_dir, read_bounded, relpath_problem, sha256_file, write_atomic

RECIPE_DIR = "recipe"
# The hash schemas whose builds this reproexec can replay: the lockfile's wheels are served to the
# build's steps at spec.WHEEL_URL (3), and the large ones get a layer of their own (4, visible
# only in the recorded Dockerfile, which is replayed as it is), and the platform is named (5; the
# schemas before built amd64 only). Schemas 1-2 copied the wheels into
# the build context; no run of theirs kept a recipe.
REPLAYABLE_SCHEMAS = (3, 4, 5)
MAX_RECIPE_FILE = 64 * 1024**2  # one file of a recipe (the lockfile is ~90 KB, the wheel ~220 KB)

LogFn = Callable[[str], None]


def write_recipe(context: list[ContextEntry], folder: Path) -> None:
    """The build context (less the served wheels, which were never in it) under `folder`."""
    for entry in context:
        path = folder / entry.arcname
        path.parent.mkdir(parents=True, exist_ok=True)
        data = entry.data if entry.data is not None else read_bounded(entry.path, MAX_RECIPE_FILE)  # type: ignore[arg-type]
        write_atomic(path, data, mode=entry.mode)


def recorded_inputs(image: dict[str, Any], source: str) -> dict[str, Any]:
    """The recorded hash inputs, checked to hash to the recorded content hash and tag."""
    inputs = image.get("hash_inputs")
    if not isinstance(inputs, dict) or not isinstance(inputs.get("context"), list):
        raise RunError(
            f"{source} records no build inputs for its image",
            "the run folder was altered, or made by a very old reproexec",
        )
    digest = content_hash(inputs)
    if digest != image.get("content_hash") or image_tag(digest) != image.get("tag"):
        raise RunError(
            f"{source}: the recorded build inputs hash to {digest[:12]}, not to the recorded image "
            f"{str(image.get('content_hash'))[:12]}",
            "the run folder was altered; do not use it",
        )
    return inputs


def recipe_entries(folder: Path, image: dict[str, Any], *, source: str) -> list[ContextEntry] | None:
    """The recorded image's recipe from `folder`, checked against the record (None: a run made
    before recipes were kept), to keep in a rerun's own folder beside the image it reused."""
    recipe = folder / RECIPE_DIR
    if not recipe.is_dir():
        return None
    inputs = recorded_inputs(image, source)
    files = _recipe_files(recipe, {str(a): (int(m), str(s)) for a, m, s in inputs["context"]}, source)
    return [files[a] for a in sorted(files)]


def plan_from_recipe(
    image: dict[str, Any], folder: Path, engine: Engine, *, source: str, on_log: LogFn | None = None
) -> BuildPlan:
    """A BuildPlan for the recorded image, from the recipe in `folder` (a run folder, or a folder
    with a recipe/ in it). Runs made before recipes were kept are rebuilt from their Dockerfile and
    lockfile when the wheel of the reproexec that made them is at hand (its cache, REPROEXEC_WHEEL)."""
    from reproexec.env.base import find_base
    from reproexec.env.wheels import ensure_wheels

    inputs = recorded_inputs(image, source)
    schema = inputs.get("schema")
    if schema not in REPLAYABLE_SCHEMAS:
        raise BuildError(
            f"{source}: its image was built the way hash schema {schema} builds, which this reproexec does not replay "
            f"(it replays schemas {', '.join(map(str, REPLAYABLE_SCHEMAS))})",
            "bring the image with the run (`reproexec export RUN --with-image` where it still exists)",
        )
    recorded = {str(a): (int(m), str(s)) for a, m, s in inputs["context"]}
    recipe = folder / RECIPE_DIR
    files = _recipe_files(recipe, recorded, source) if recipe.is_dir() else None
    dockerfile = _text(files, "Dockerfile", folder, inputs["dockerfile_sha256"], source)
    lock = parse_lock(
        _text(files, "requirements.lock", folder, inputs["lock_sha256"], source), recipe / "requirements.lock"
    )
    base = find_base(engine, inputs, source=source, packages=_recorded_packages(folder))
    try:
        wheels = ensure_wheels(lock, probe_target(engine, base.image_id), on_log=on_log)
    except (LockError, BuildError) as e:  # its own hint is for someone locking, not rebuilding a run
        raise BuildError(
            f"{source}: the recorded wheels cannot be had on this machine ({e.message})",
            "let pip reach an index or --find-links folder that serves the locked files (PIP_INDEX_URL, "
            "PIP_FIND_LINKS), or bring the image with the run (`reproexec export RUN --with-image` where it exists)",
            details=e.details,
        ) from e
    got = sorted([w.filename, w.sha256] for w in wheels)
    if got != sorted(inputs["wheels"]):
        raise BuildError(
            f"{source}: the lockfile's wheels for this base are not the recorded ones",
            "the package index serves other files for these pins now; bring the image (`export --with-image`)",
            details=_list_difference(sorted(inputs["wheels"]), got),
        )
    self_wheel = _self_wheel(files, recipe, inputs["reproexec_wheel"], source)
    spec = ImageSpec(
        flavour=inputs["flavour"],
        base=base,
        lock=lock,
        wheels=tuple(wheels),
        self_wheel=self_wheel,
        apt_packages=(),
        cublas_workspace_config="",
        arch=str(inputs.get("arch", "amd64")),  # schemas before 5 built amd64 only
    )
    context = [files[a] for a in sorted(files)] if files is not None else build_context(spec, dockerfile)
    have = {e.arcname: (e.mode, e.sha256) for e in context}
    if have != recorded:
        raise BuildError(
            f"{source}: the build context cannot be put together as recorded",
            "bring the image (`export --with-image`), or rerun with the reproexec release that made the run",
            details=_list_difference(
                sorted(f"{a} {s[:12]}" for a, (_, s) in recorded.items()),
                sorted(f"{a} {s[:12]}" for a, (_, s) in have.items()),
            ),
        )
    return BuildPlan(
        spec=spec, dockerfile=dockerfile, context=context, inputs=inputs, content_hash=image["content_hash"]
    )


def _recipe_files(recipe: Path, recorded: dict[str, tuple[int, str]], source: str) -> dict[str, ContextEntry]:
    """The recipe's files, each a regular file (no link followed) with its recorded sha256."""
    files: dict[str, ContextEntry] = {}
    problems = []
    for arcname, (mode, sha) in sorted(recorded.items()):
        if relpath_problem(arcname):
            problems.append(f"{arcname!r}: {relpath_problem(arcname)}")
            continue
        try:
            data = read_bounded(recipe / arcname, MAX_RECIPE_FILE, follow_symlinks=False)
        except FileNotFoundError:
            problems.append(f"{RECIPE_DIR}/{arcname}: missing")
            continue
        except OSError as e:
            problems.append(f"{RECIPE_DIR}/{arcname}: {e.strerror or e}")
            continue
        entry = ContextEntry.from_bytes(arcname, data, mode)
        if entry.sha256 != sha:
            problems.append(f"{RECIPE_DIR}/{arcname}: sha256 {entry.sha256[:12]}, recorded {sha[:12]}")
            continue
        files[arcname] = entry
    if problems:
        raise RunError(
            f"{source}: its recipe does not match its record",
            "the run folder was altered; do not use it",
            details=problems[:20],
        )
    return files


def _text(files: dict[str, ContextEntry] | None, arcname: str, folder: Path, sha: str, source: str) -> str:
    """A text file of the recipe; for a run made before recipes, the copy at the run folder's top."""
    if files is not None:
        entry = files.get(arcname)
        if entry is None or entry.data is None:
            raise RunError(f"{source}: its recipe has no {arcname}", "the run folder was altered; do not use it")
        return entry.data.decode("utf-8")
    try:
        data = read_bounded(folder / arcname, MAX_RECIPE_FILE, follow_symlinks=False)
    except OSError as e:
        raise RunError(
            f"{source} keeps no {arcname} to rebuild its image from ({e.strerror or e})",
            "bring the image (`export --with-image`)",
        ) from None
    entry = ContextEntry.from_bytes(arcname, data)
    if entry.sha256 != sha:
        raise RunError(
            f"{source}: {arcname} is not the one its image was built from", "the run folder was altered; do not use it"
        )
    return data.decode("utf-8")


def _self_wheel(files: dict[str, ContextEntry] | None, recipe: Path, recorded: list[str], source: str) -> Wheel:
    """The wheel of the reproexec that made the run: from the recipe, or (older runs) found by its
    sha256 in this machine's cache of built wheels or at REPROEXEC_WHEEL."""
    from reproexec.env.selfwheel import wheel_of

    filename, sha = recorded
    if files is not None:
        if f"selfwheel/{filename}" not in files:
            raise RunError(f"{source}: its recipe lacks reproexec's wheel {filename}", "the run folder was altered")
        return wheel_of(recipe / "selfwheel" / filename, sha)
    candidates = [Path(os.environ["REPROEXEC_WHEEL"])] if os.environ.get("REPROEXEC_WHEEL") else []
    candidates += sorted((cache_dir() / "self").glob(f"*/{filename}"))
    for path in candidates:
        if path.name == filename and path.is_file() and sha256_file(path) == sha:
            return wheel_of(path, sha)
    raise BuildError(
        f"{source} was made before run folders kept reproexec's own wheel, and the one it was built with "
        f"({filename}, sha256 {sha[:16]}…) is not on this machine",
        "rerun it with the reproexec that made it, or build that release's wheel and pass it as REPROEXEC_WHEEL=FILE; "
        "or bring the image (`reproexec export RUN --with-image` where it still exists)",
    )


def _recorded_packages(folder: Path) -> dict[str, str]:
    """The Debian packages the run's image held (environment.json), to name what moved in a base."""
    try:
        env = json.loads(read_bounded(folder / "environment.json", MAX_RECIPE_FILE, follow_symlinks=False))
    except (OSError, ValueError, RecursionError):
        return {}
    debs = env.get("debian_packages") if isinstance(env, dict) else None
    return {str(k): str(v) for k, v in debs.items()} if isinstance(debs, dict) else {}


def _list_difference(recorded: list[Any], now: list[Any]) -> list[str]:
    gone = [json.dumps(x) if not isinstance(x, str) else x for x in recorded if x not in now]
    new = [json.dumps(x) if not isinstance(x, str) else x for x in now if x not in recorded]
    return [f"recorded only: {x}" for x in gone[:10]] + [f"here only: {x}" for x in new[:10]]
