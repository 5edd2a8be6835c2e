"""The run's report page (report.html) from what a run folder holds: a real run's record (tests/
fixtures/runs/), with files a script or a bundle could have left in its place."""

import json
import re
import shutil
import time

import pytest
from needs import REPO

from reproexec.runs.report import MAX_CURVE_POINTS, render_comparison, render_report

FIXTURE = REPO / "tests" / "fixtures" / "runs" / "2026-12-06_resnet18_digits_ffdd63"


def run_folder(tmp_path, *, byo: bool, metrics: str | None = None):
    """The fixture run (the built-in trainer), or as a bring-your-own run whose script logged `metrics`."""
    d = tmp_path / FIXTURE.name
    shutil.copytree(FIXTURE, d)
    record = json.loads((d / "run.json").read_text())
    if byo:
        record.update(entrypoint=["python", "train.py"], command=["python", "train.py"], summary=None)
        (d / "summary.json").unlink()
    if metrics is not None:
        (d / "metrics" / "metrics.jsonl").write_text(metrics)
    return d, record


def text_of(html: str, element_id: str) -> str:
    m = re.search(rf'id="{element_id}"[^>]*>(.*?)</(p|table)>', html, re.S)
    assert m, f"no #{element_id} in the page"
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", m.group(1))).strip()


def test_metrics_show_four_decimals_as_the_terminal_does(tmp_path):
    d, record = run_folder(tmp_path, byo=False)
    html = render_report(d, record)
    acc = record["summary"]["final"]["val_acc"]
    assert len(repr(acc)) > 10 and repr(acc) not in html  # 0.9665738161559888
    assert f"val_acc {acc:.4f}" in text_of(html, "metrics")
    epochs = text_of(html, "epochs")
    assert "1.9640" in epochs and "1.9639733235041301" not in epochs  # the first epoch's train_loss

    d, record = run_folder(tmp_path / "byo", byo=True, metrics='{"step": 1, "loss": 0.123456789, "lr": 0.00001}\n')
    assert text_of(render_report(d, record), "metrics") == "metric (last value logged) value loss 0.1235 lr 1.00e-05"


def test_a_bad_metrics_line_keeps_the_other_rows_and_is_named_on_the_page(tmp_path):
    rows = "".join(json.dumps({"step": s, "loss": 1 / s}) + "\n" for s in range(1, 5))
    d, record = run_folder(tmp_path, byo=True, metrics=rows + '{"step": 5, "loss": 0.2}\n{"step": 6, "lo')
    html = render_report(d, record)
    assert text_of(html, "metrics") == "metric (last value logged) value loss 0.2000"
    assert text_of(html, "metrics-problem") == (
        "The script's metrics ( metrics/metrics.jsonl ) were read in part: "
        "metrics.jsonl line 6 is not a JSON object (the other rows were kept)."
    )
    assert 'id="no-metrics"' not in html and html.count("<polyline") == 1


def test_a_linked_or_unreadable_metrics_file_is_named_not_called_empty(tmp_path):
    d, record = run_folder(tmp_path, byo=True)
    (d / "metrics" / "metrics.jsonl").symlink_to(FIXTURE / "metrics" / "steps.jsonl")
    (d / "config.yaml").unlink()
    (d / "config.yaml").symlink_to("/etc/passwd")
    html = render_report(d, record)
    assert text_of(html, "metrics-problem").startswith(
        "The script's metrics ( metrics/metrics.jsonl ) were read in part: metrics.jsonl: "
    )
    assert 'id="no-metrics"' not in html and 'id="metrics"' not in html
    assert "root:" not in html  # the link is not followed

    d, record = run_folder(tmp_path / "none", byo=True)
    assert 'id="no-metrics"' in render_report(d, record)  # no file at all: the script logged none


def test_a_million_rows_are_read_and_drawn_within_bounds(tmp_path):
    """A script that logged 1,000,001 rows: the first 1,000,000 are read (fsutil's cap), the page
    says so and draws each curve with at most MAX_CURVE_POINTS points."""
    rows = '{"loss": 0.5}\n' * 999_999 + '{"loss": 0.125}\n{"loss": 0.25}\n'
    d, record = run_folder(tmp_path, byo=True, metrics=rows)
    start = time.monotonic()
    html = render_report(d, record)
    assert time.monotonic() - start < 30
    assert text_of(html, "metrics-problem").endswith(
        "metrics.jsonl has more than 1,000,000 rows: only the first were read."
    )
    assert text_of(html, "metrics") == "metric (last value logged) value loss 0.1250"  # row 1,000,000's
    (points,) = re.findall(r'points="([^"]*)"', html)
    assert len(points.split()) <= MAX_CURVE_POINTS + 1 and len(html) < 200_000


@pytest.mark.parametrize("summary", ["[1, 2]", "[" * 200_000 + "]" * 200_000])
def test_a_summary_that_is_not_an_object_gives_the_scripts_own_metrics(tmp_path, summary):
    from reproexec.runs.compare import final_metrics

    d, record = run_folder(tmp_path, byo=True, metrics='{"step": 1, "acc": 0.5, "big": 1' + "0" * 400 + "}\n")
    (d / "summary.json").write_text(summary)
    assert final_metrics(d) == {"acc": 0.5, "big": float("inf")}  # JSON allows any number of digits
    html = render_report(d, record)
    assert text_of(html, "metrics") == "metric (last value logged) value acc 0.5000 big inf"


def test_the_comparison_page_says_what_was_read_in_part():
    c = {
        "verdict": "identical",
        "first_divergence": None,
        "files": [],
        "final": {},
        "weights": [None, None],
        "unread": ["a: metrics.jsonl line 3 is not a JSON object (the other rows were kept)"],
    }
    html = render_comparison({"original": "a", "rerun": "b", "comparison": c, "env_diff": [], "hints": []})
    assert text_of(html, "unread") == (
        "Read in part (the verdict stands on the rows read): "
        "a: metrics.jsonl line 3 is not a JSON object (the other rows were kept)."
    )


def test_the_curves_tick_at_whole_steps_and_epochs(tmp_path, monkeypatch):
    from reproexec.runtime import artifacts

    drawn = []
    monkeypatch.setattr(artifacts, "_save_png", lambda fig, path: drawn.append(fig) or "")
    steps = [{"step": s, "loss": 2 / s} for s in range(1, 13)]
    epochs = [{"epoch": e, "step": 6 * e, "val_loss": 1 / e, "val_acc": 0.5 + e / 10} for e in (1, 2)]
    artifacts.plot_curves(tmp_path / "curves.png", steps, epochs)
    (fig,) = drawn
    fig.canvas.draw()
    for ax in fig.axes:  # step, then epoch
        lo, hi = ax.get_xlim()
        shown = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert len(shown) >= 2 and all(t == int(t) for t in shown), shown
