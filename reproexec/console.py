"""The only module that prints.

Data a user may pipe (a resolved config, a Dockerfile, JSON) goes to stdout; messages, progress
and errors go to stderr. Colour follows rich's rules (NO_COLOR, not a TTY → plain text).

Much of what is printed was written by someone else: a run's reason, a bundle's run.json, a
script's output lines. Every string goes through `visible` on its way out (in `_Console.print`,
`table` and `data`), so a control character shows as its escape and never reaches the terminal.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from rich.console import Console

# C0 and C1 control characters and DEL, each shown as its escape (ESC as `\x1b`): raw, they would
# set the terminal's title (ESC]0;...BEL), clear it (ESC[2J) or colour what follows (ESC[31m); rich
# escapes markup, not these. Newline and tab stay, for values that are meant to span lines.
_VISIBLE = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0)) if c not in (0x09, 0x0A)}


def visible(text: str) -> str:
    """`text` with every control character but newline and tab replaced by its escape."""
    return text.translate(_VISIBLE)


class _Console(Console):
    """A rich Console that prints every string through `visible` (renderables are built here, from
    strings that went through it: see `table`)."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        super().print(*(visible(o) if isinstance(o, str) else o for o in objects), **kwargs)


# Piped output is not cut to 80 columns: ids and hashes must stay whole for other tools.
# emoji=False: a file named `a:x:b.png` prints as itself, not with an emoji in the middle.
out = _Console(soft_wrap=True, highlight=False, emoji=False, width=None if sys.stdout.isatty() else 200)
err = _Console(stderr=True, soft_wrap=True, highlight=False, emoji=False)


def data(text: str) -> None:
    """Raw text for stdout, printed exactly (no markup, no wrapping) but for control characters
    (see `visible`; JSON and YAML escape their own)."""
    text = visible(text)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def json_data(obj: Any) -> None:
    data(json.dumps(obj, indent=2, sort_keys=True, default=str))


def info(text: str) -> None:
    err.print(text, markup=False)


def success(text: str) -> None:
    err.print(f"[green]✓[/green] {_escape(text)}")


def warn(text: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {_escape(text)}")


def error(text: str) -> None:
    err.print(f"[red]error:[/red] {_escape(text)}")


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.table import Table  # ~5 ms to import: only where a table is printed

    t = Table(title=None if title is None else visible(title), show_lines=False)
    for c in columns:
        t.add_column(visible(c), overflow="fold")
    for r in rows:
        t.add_row(*["" if v is None else visible(str(v)) for v in r])
    out.print(t)


def size(n: float) -> str:
    """1,234 bytes / 12.3 KB / 4.5 MB / 6.7 GB (decimal units, as `ls -h --si` and disk vendors)."""
    for unit in ("bytes", "KB", "MB"):
        if n < 1000:
            return f"{int(n):,} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:,.1f} GB"


def key_values(pairs: Sequence[tuple[str, Any]]) -> None:
    pairs = [(visible(k), v) for k, v in pairs]  # aligned by the width they print at
    width = max((len(k) for k, _ in pairs), default=0)
    for k, v in pairs:
        out.print(f"{k.ljust(width)}  {v}", markup=False)


@contextlib.contextmanager
def progress(
    description: str, total: int | None, *, unit: str = "files", bytes_total: int | None = None
) -> Iterator[Any]:
    """A progress bar on stderr. Yields `advance(n_items, n_bytes)`."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=err, transient=False, disable=not err.is_terminal) as p:
        task = p.add_task(description, total=total, rate="")
        state = {"items": 0, "bytes": 0}

        def advance(n_items: int = 1, n_bytes: int = 0) -> None:
            state["items"] += n_items
            state["bytes"] += n_bytes
            elapsed = p.tasks[task].elapsed or 1e-9
            rate = f"{state['items'] / elapsed:,.0f} {unit}/s"
            if state["bytes"]:
                rate += f" {state['bytes'] / elapsed / 1e6:,.1f} MB/s"
            p.update(task, advance=n_items, rate=rate)

        yield advance


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


@contextlib.contextmanager
def run_progress() -> Iterator[Any]:
    """Show a run's event stream: a bar over steps with loss and ETA; other output as plain lines.
    Yields the callback that takes each event."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=err, disable=not err.is_terminal) as p:
        task = p.add_task("training", total=None, loss="-")

        def on_event(event: dict[str, Any]) -> None:
            kind = event.get("event")
            if kind == "step":  # a script can print any JSON line: only counts and numbers are believed
                step, total, loss = (
                    _count(event.get("step")),
                    _count(event.get("total_steps")),
                    _number(event.get("loss", 0)),
                )
                loss_text = "-" if loss is None else f"{loss:.4f}"
                p.update(task, completed=step or 0, total=total, loss=loss_text)
                if not err.is_terminal and step is not None and step % 50 == 0:
                    info(f"step {step}/{total} loss {loss_text}")
            elif kind == "epoch":
                metrics = ", ".join(
                    f"{k} {v:.4f}"
                    for k, v in event.items()
                    if isinstance(v, float) and k in ("train_loss", "val_loss", "val_acc")
                )
                p.console.print(f"epoch {event.get('epoch')}: {metrics}", markup=False, highlight=False)
            elif kind == "error":
                p.console.print(f"trainer error: {event.get('message')}", markup=False, highlight=False)
            elif kind == "output":
                # A progress bar (tqdm) redraws its line with carriage returns: show what a terminal would.
                line = str(event.get("line", ""))
                shown = next((part for part in reversed(line.split("\r")) if part), "")
                p.console.print(shown, markup=False, highlight=False)

        yield on_event


def _count(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**53 else None  # a float holds it


def _number(v: Any) -> float | None:
    return (
        float(v)
        if isinstance(v, float) or (isinstance(v, int) and not isinstance(v, bool) and abs(v) < 2**53)
        else None
    )


def run_summary(outcome: Any) -> None:
    """The end of `reproexec run`: id, status, key metrics, where the folder is."""
    summary = outcome.summary if isinstance(outcome.summary, dict) else {}
    final = summary.get("final") if isinstance(summary.get("final"), dict) else {}
    pairs = [("run id", outcome.run_id), ("status", outcome.status + (f": {outcome.reason}" if outcome.reason else ""))]
    pairs += [
        (k, f"{v:.4f}" if isinstance(v, float) else v) for k, v in sorted(final.items()) if isinstance(v, (int, float))
    ]
    if summary.get("weights_sha256"):
        pairs.append(("weights sha256", summary["weights_sha256"]))
    pairs.append(("run folder", str(outcome.run_dir)))
    key_values(pairs)


def env_diff(a: str, b: str, diffs: Sequence[Any]) -> None:
    if not diffs:
        out.print(f"no environment differences between {a} and {b}", markup=False)
        return
    n = sum(1 for d in diffs if d.numerics)
    rows = [[d.key, d.a, d.b, "yes" if d.numerics else "no", d.why] for d in diffs]
    table(f"{len(diffs)} differences, {n} can change numbers", ["what", a, b, "numbers?", "why"], rows)


def rerun_verdict(result: Any) -> None:
    c = result.comparison
    if c is None:
        error(f"the rerun did not succeed: {result.outcome.reason}")
    else:
        colour = {"identical": "green", "within tolerance": "yellow"}.get(c.verdict, "red")
        signed = f", signed by key {result.signed_by}" if result.signed_by else ""
        out.print(f"[bold {colour}]{c.verdict}[/] (rerun of {result.original.run_id}){signed}")
        if c.compared_files:
            results = sum(1 for f in c.files if f["kind"] == "result")
            out.print(
                f"compared {c.compared_files} file(s) the entrypoint wrote: {results} result(s) decide, "
                "logs and other files are only reported",
                markup=False,
            )
        if c.unequal_logs:
            out.print(f"logs that differ (not a difference of the results): {', '.join(c.unequal_logs)}", markup=False)
        if c.first_divergence:
            d = c.first_divergence
            out.print(f"first difference: {d.where}, {d.metric}: {d.a} (original) vs {d.b} (rerun)", markup=False)
        for problem in c.unread:
            out.print(f"read in part (the verdict stands on the rows read): {problem}", markup=False)
        if c.verdict != "identical" or not c.final:
            rows = [[k, v[0], v[1]] for k, v in c.final.items()]
            if rows:
                table("final metrics", ["metric", "original", "rerun"], rows)
            else:
                out.print("final metrics: none logged (a script can log them with reproexec.track.log)", markup=False)
    env_diff(result.original.run_id, result.outcome.run_id, result.env_diff)
    for hint in result.hints:
        out.print(f"hint: {hint}", markup=False)
    info(f"comparison page: {result.outcome.run_dir / 'comparison.html'}")


def gc_plan(plan: Any, *, dry_run: bool) -> None:
    rows = [["remove" if dry_run else "removing", i.ref[:80], size(i.size), i.why] for i in plan.remove]
    rows += [["keep", i.ref[:80], size(i.size), i.why] for i in plan.keep]
    if not rows:
        info("no reproexec images or cached base rootfs here")
        return
    table(None, ["", "image or file", "size", "why"], rows)
    verb = "would free" if dry_run else "frees"
    info(f"{len(plan.remove)} item(s) to remove; {verb} up to {size(plan.bytes)} (images share layers)")


def sweep_plan(view: dict[str, Any]) -> None:
    """`sweep --dry-run`: the cells, what each variant changes, the image(s)."""
    key_values(
        [
            ("sweep", view["sweep"]),
            ("folder", view["folder"]),
            ("base config", view["base"]),
            ("metric / baseline", f"{view['metric']} / {view['baseline']}"),
            ("executor", view["executor"]),
            ("image", ", ".join(view["images"])),
            ("data manifest", ", ".join(sorted(set(view["manifests"].values())))),
        ]
    )
    for variant, diffs in view["differences"].items():
        rows = [[d[0], json.dumps(d[1]), json.dumps(d[2])] for d in diffs]
        if rows:
            table(f"{variant}: differences from the base", ["field", "base", variant], rows)
        else:
            out.print(f"{variant}: the base config, unchanged", markup=False)
    rows = [
        [c["key"], c["variant"], c["seed"], c["cell_id"][:12], c["image_tag"], c["reuses"] or "will run"]
        for c in view["cells"]
    ]
    table(f"{len(rows)} cells", ["cell", "variant", "seed", "cell id", "image", "status"], rows)


def sweep_cells(record: dict[str, Any]) -> None:
    """`sweep status`: one line per cell."""
    key_values(
        [("sweep", record.get("sweep_id")), ("folder", record.get("folder", "")), ("status", record.get("status"))]
    )
    rows = []
    for c in record["cells"]:
        slurm = c.get("slurm") or {}
        job = f"{slurm.get('job_id')} {slurm.get('state') or ''}".strip() if slurm.get("job_id") else ""
        status = c.get("status", "") + (" (earlier run)" if c.get("reused") else "")
        rows.append([c["key"], status, c.get("run_id") or "", job, c.get("reason") or ""])
    table(None, ["cell", "status", "run id", "Slurm job", "reason"], rows)


def sweep_result(record: dict[str, Any], report: dict[str, Any], folder: Any) -> None:
    """The end of `reproexec sweep`: the cells, the Markdown comparison table, where the report is."""
    from reproexec.sweep.report import markdown_table

    sweep_cells({**record, "folder": str(folder)})
    data(markdown_table(report))
    nf = report["stats"]["noise_floor"]
    if nf.get("std") is not None:
        info(f"seed-noise floor ({report['baseline']}, {nf['n']} seeds): std {nf['std']:.4f}")
    info(f"report: {folder}/report.html (summary.csv, summary.md beside it)")


def runs_side_by_side(table_data: dict[str, Any]) -> None:
    """`runs compare`: config differences and final metrics, one column per run."""
    runs = table_data["runs"]
    rows: list[list[Any]] = [["status", *table_data["status"]]]
    rows += [[d["field"], *[json.dumps(v) for v in d["values"]]] for d in table_data["config_differences"]]
    rows += [[m["metric"], *["" if v is None else f"{v:.4f}" for v in m["values"]]] for m in table_data["metrics"]]
    rows.append(["weights sha256", *[(w or "")[:16] for w in table_data["weights_sha256"]]])
    n = len(table_data["config_differences"])
    table(f"{len(runs)} runs: {n} config field{'s' if n != 1 else ''} differ", ["", *runs], rows)


def verification(result: Any) -> None:
    """`reproexec verify`: what was checked, each with its outcome, then one line."""
    rows = [[c.what, "ok" if c.ok else "FAILED", c.detail] for c in result.checks]
    table(f"run {result.run_id}", ["check", "", "what"], rows)
    if result.ok:
        who = f", signed by key {result.signed_by}" if result.signed_by else (", unsigned" if result.attested else "")
        success(f"run {result.run_id} verifies{who}")


def smoke_result(result: Any) -> None:
    """`reproexec smoke`, when it passed: each run's numbers, then one line (a failure is an error)."""

    def num(v: Any, spec: str = ".4f") -> str:
        return "-" if not isinstance(v, int | float) else format(v, spec)

    rows = [
        [
            str(i + 1),
            r.run_id,
            r.status,
            r.measured["steps"],
            f"{num(r.measured['loss_first_mean'])} → "
            f"{num(r.measured['loss_last_mean'])} ({num(r.measured['loss_drop'], '.1%')})",
            repr(r.to_dict()["loss_sum_first5"]),
        ]
        for i, r in enumerate(result.runs)
    ]
    table(
        f"smoke {result.name} ({result.runtime})",
        ["run", "id", "status", "steps", "loss (drop)", "sum of first 5 losses"],
        rows,
    )
    if result.steps_s is not None:
        outside = result.wall_s - result.steps_s
        info(
            f"{result.wall_s:.1f} s in all, {result.steps_s:.1f} s of it the runs' own training, {outside:.1f} s outside it"
        )
    else:
        info(f"{result.wall_s:.1f} s in all")
    twice = "twice, identical" if len(result.runs) == 2 else "once (no determinism check: --once)"
    success(f"smoke passed {twice}: the invariants hold; smoke.json in {result.out_dir}")
