"""The benchmark's report: a dataclass written as JSON, printed as tables, drawn as a chart (matplotlib)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np

from .worker import STAGES


@dataclass
class BenchmarkReport:
    """Everything one benchmark run measured. The runs stay plain dicts: they arrive as JSON from the worker
    processes (worker.py documents their fields) and are written back unchanged."""

    machine: dict[str, Any]  # machine.describe_machine()
    photos: dict[str, Any]  # first, warmup, timed: the same for every run
    settings: dict[str, Any]
    memory_note: str
    roofline: dict[str, Any] | None = None  # with --roofline
    configurations: list[dict[str, Any]] = field(default_factory=list)  # one per runtime configuration
    keras_reference: list[dict[str, Any]] = field(default_factory=list)  # one per (TTA, scan) plan, --compare-keras
    command_line: str = ""
    argv: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """A run or reference failed, or no configuration ran at all (only skipped ones)."""
        statuses = [run["status"] for run in self.configurations]
        references_failed = any(ref["status"] != "ok" for ref in self.keras_reference)
        return "failed" in statuses or "ok" not in statuses or references_failed

    @property
    def measured_nothing(self) -> bool:
        """No configuration finished: there are no timings to write."""
        return not any(run["status"] == "ok" for run in self.configurations)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.roofline is None:
            del data["roofline"]
        return data


STAGE_TITLES = {"load": "read+decode", "prepare": "preprocess", "infer": "inference", "postprocess": "postprocess"}


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1000
    return f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))
             for line in [headers, *rows]]
    return "\n".join(lines)


def print_report(report: BenchmarkReport) -> None:
    machine = report.machine
    click.echo(f"\n{machine['cpu']}, {machine['logical_cores']} logical cores, "
               f"{_num(machine['ram_gb'])} GB RAM, {machine['os']}, Python {machine['python']}")
    click.echo(f"load average at start {machine['load_average_start']} (other processes compete for the CPU)")
    click.echo(f"{len(report.photos['timed'])} timed photos per run, latency in ms per photo\n")
    runs = [run for run in report.configurations if run["status"] == "ok"]
    references = [ref for ref in report.keras_reference if ref["status"] == "ok"]
    latency_rows = []
    for run in [*runs, *references]:
        lat = run["latency_s"]
        latency_rows.append([
            run["name"], _num(run["views_per_photo"]), _ms(run["session_creation_s"]), _ms(run["first_call_s"]),
            _ms(lat["p50"]), _ms(lat["p90"]), _ms(lat["p99"]), _ms(lat["mean"]), _ms(lat["min"]), _ms(lat["max"]),
            _num(run["photos_per_s"], 2), _num(run["views_per_s"], 1),
        ])
    if latency_rows:
        click.echo(_table(["configuration", "views", "session", "first", "p50", "p90", "p99", "mean", "min", "max",
                           "photo/s", "view/s"], latency_rows))
        click.echo()
    detail_rows = []
    for run in [*runs, *references]:
        stages = run["stages_s_per_photo"]
        memory = run["memory"]
        flops = run.get("flops", {})
        keras = run.get("keras", {})
        speedup = (f"{keras['speedup_mean']:.2f}x/{keras['speedup_p50']:.2f}x" if keras.get("status") == "ok"
                   else "-")
        agreement = keras.get("top1_agreement")
        detail_rows.append([
            run["name"], *(_ms(stages[stage]) for stage in STAGES),
            f"{_num(memory['peak_rss_mb'], 0)} (+{_num(memory['peak_increase_mb'], 0)})",
            _num(flops.get("achieved_gflop_per_s")),
            f"{flops['roofline_fraction']:.0%}" if "roofline_fraction" in flops else "-",
            speedup,
            f"{agreement:.0%}" if agreement is not None else keras.get("agreement_note", "-") if keras else "-",
        ])
    if detail_rows:
        click.echo(_table(["configuration", *(STAGE_TITLES[stage] for stage in STAGES), "peak MB (+rise)",
                           "GFLOP/s", "roofline", "vs keras mean/p50", "top-1 agree"], detail_rows))
    for run in [*report.configurations, *report.keras_reference]:
        if run["status"] != "ok":
            click.echo(f"{run['status']}: {run['name']}: {run['reason']}")
    roofline = report.roofline
    if roofline:
        if roofline["status"] == "ok":
            click.echo(f"roofline: {roofline['matrix']} matmul, {roofline['threads']} threads: "
                       f"{roofline['best_gflop_per_s']:.1f} GFLOP/s best, {roofline['median_gflop_per_s']:.1f} median")
        else:
            click.echo(f"roofline failed: {roofline['reason']}")
    click.echo("stage times are means per photo; GFLOP/s = model FLOPs (2 x conv/matmul MACs) x views / "
               "inference time; peak MB is each run's own subprocess (+rise over its baseline after imports)")


def write_chart(report: BenchmarkReport, path: Path) -> None:
    """Horizontal bars of p50 latency per run, whiskers to p99 and a tick at p90."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [run for run in [*report.configurations, *report.keras_reference] if run["status"] == "ok"]
    names = [run["name"] for run in runs]
    p50 = np.array([run["latency_s"]["p50"] * 1000 for run in runs])
    p90 = np.array([run["latency_s"]["p90"] * 1000 for run in runs])
    p99 = np.array([run["latency_s"]["p99"] * 1000 for run in runs])
    colors = ["tab:orange" if run.get("kind") == "keras" else "tab:blue" for run in runs]
    figure, axes = plt.subplots(figsize=(10, 1.2 + 0.4 * max(1, len(runs))))
    positions = np.arange(len(runs))
    axes.barh(positions, p50, color=colors, xerr=[np.zeros_like(p50), p99 - p50], capsize=3)
    axes.plot(p90, positions, "k|", markersize=12, label="p90")
    axes.set_yticks(positions, names, fontsize=8)
    axes.invert_yaxis()
    if len(runs) and p99.max() / max(p50.min(), 1e-9) > 30:  # a spread the eye cannot read on a linear axis
        axes.set_xscale("log")
    axes.set_xlabel("latency per photo, ms (bar p50, tick p90, whisker p99; orange = Keras reference)")
    axes.margins(x=0.1)
    axes.legend(loc="best")
    axes.set_title(f"{report.machine['cpu']}, {len(report.photos['timed'])} photos per run", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=120)
    plt.close(figure)
