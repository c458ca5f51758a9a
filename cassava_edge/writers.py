"""Result writers: table, json, jsonl and csv, each writing one Classification at a time, and the closing
summary of a run.

They live in the runtime (not the CLI) so that apps and other tools can write the same formats as the
`cassava-edge classify` command. Every writer has a row for every photo, failed ones included.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections import Counter
from typing import Iterable, TextIO

from cassava_edge.results import FAILED, NOT_CASSAVA, OK, SPEED_STAGES, STATUSES, Classification

FORMATS = ("table", "json", "jsonl", "csv")


class ResultWriter:
    """Writes results as they arrive, flushing each one so an interrupted run keeps what it did."""

    def __init__(self, stream: TextIO, labels: tuple[str, ...], top_k: int) -> None:
        self.stream = stream
        self.labels = labels
        self.top_k = top_k

    def start(self) -> None: ...

    def write(self, result: Classification) -> None:
        self._write(result)
        self.stream.flush()

    def _write(self, result: Classification) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        self.stream.flush()


class TableWriter(ResultWriter):
    """Aligned columns for people: status, label (only when ok), confidence, top-k, then, given the model's
    `label_names`, the diagnosis's full name (disease), and source. A failed photo's row gives the reason where
    the top-k would be."""

    status_width = max(len(status) for status in STATUSES)

    def __init__(
        self, stream: TextIO, labels: tuple[str, ...], top_k: int, label_names: tuple[str, ...] | None = None
    ) -> None:
        super().__init__(stream, labels, top_k)
        # The full names come from the model's metadata, in label order; none given: no disease column.
        self.names = dict(zip(labels, label_names)) if label_names is not None else None

    def start(self) -> None:
        self.width = max(len("label"), *(len(label) for label in self.labels))
        # Each top-k entry is "<label> 0.123", joined by ", ".
        self.top_width = self.top_k * (self.width + 6) + 2 * (self.top_k - 1)
        disease = ""
        if self.names is not None:
            self.name_width = max(len("disease"), *(len(name) for name in self.names.values()))
            disease = f"{'disease':<{self.name_width}}  "
        self.stream.write(
            f"{'status':<{self.status_width}}  {'label':<{self.width}}  confidence  {'top-k':<{self.top_width}}  "
            f"{disease}source\n"
        )

    def _write(self, result: Classification) -> None:
        if result.status == NOT_CASSAVA and result.not_cassava_score is not None:
            # The top disease probability is not this row's confidence; the not-cassava score is.
            top, confidence = "-", f"{result.not_cassava_score:>10.3f}"
        elif result.ok:
            top = ", ".join(f"{label} {p:.3f}" for label, p in result.top_k)
            confidence = f"{result.confidence:>10.3f}"
        else:
            top, confidence = f"error: {result.error}", f"{'-':>10}"
        disease = ""
        if self.names is not None:
            name = self.names.get(result.label, "-") if result.label else "-"
            disease = f"{name:<{self.name_width}}  "
        self.stream.write(
            f"{result.status:<{self.status_width}}  {result.label or '-':<{self.width}}  {confidence}  "
            f"{top:<{self.top_width}}  {disease}{result.source}\n"
        )


class JsonlWriter(ResultWriter):
    """One JSON object per line, failed files included with ok false and their error. A photo read from a file
    also has `real_path`, its resolved real path when the line was written."""

    def _write(self, result: Classification) -> None:
        data = result.to_dict()
        # Resolved now, in the folder the run is in: a relative source alone cannot be matched by a --resume run
        # started from another folder. "-" (standard input) and "<array>"-style names are no files.
        if result.source != "-" and not result.source.startswith("<"):
            data["real_path"] = os.path.realpath(result.source)
        self.stream.write(json.dumps(data) + "\n")


class JsonWriter(ResultWriter):
    """One JSON array; written item by item, so it is complete only when the run is."""

    def start(self) -> None:
        self.count = 0
        self.stream.write("[")

    def _write(self, result: Classification) -> None:
        self.stream.write(("," if self.count else "") + "\n  " + json.dumps(result.to_dict()))
        self.count += 1

    def finish(self) -> None:
        self.stream.write("\n]\n")
        super().finish()


class CsvWriter(ResultWriter):
    """source, ok (true/false), status, label, confidence, not_cassava_score, one probability column per label,
    error. Empty cells where a value does not apply."""

    def start(self) -> None:
        self.writer = csv.writer(self.stream, lineterminator="\n")
        self.writer.writerow(
            ["source", "ok", "status", "label", "confidence", "not_cassava_score", *self.labels, "error"]
        )

    def _write(self, result: Classification) -> None:
        probs = [_decimal(result.probabilities.get(label)) for label in self.labels]
        self.writer.writerow([
            result.source, "true" if result.ok else "false", result.status, result.label or "",
            _decimal(result.confidence), _decimal(result.not_cassava_score), *probs, result.error or "",
        ])


def _decimal(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


WRITERS: dict[str, type[ResultWriter]] = {
    "table": TableWriter,
    "json": JsonWriter,
    "jsonl": JsonlWriter,
    "csv": CsvWriter,
}


# Under this wall time a photos/s figure is mostly timer noise (and an instant failure is no speed at all).
MIN_SECONDS_FOR_RATE = 0.01


class RunSummary:
    """Counts results by status while a run goes, and says at the end how many, how fast."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.started = time.perf_counter()
        self.seconds: float | None = None  # wall time, set by finish()
        self.interrupted = False  # set when the run was stopped (Ctrl-C) before its last photo
        self.stage_ms: Counter[str] = Counter()  # milliseconds per stage, summed over the timed results
        self.timed = 0  # results that came with `speed`

    def add(self, result: Classification) -> None:
        self.counts[result.status] += 1
        if result.speed is not None:
            self.stage_ms.update(result.speed)
            self.timed += 1

    def add_counts(self, counts: Iterable[tuple[str, int]]) -> None:
        for status, count in counts:
            self.counts[status] += count

    def finish(self) -> None:
        """Stop the clock: what runs after (writing reports) is not the run's time."""
        self.seconds = time.perf_counter() - self.started

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def line(self) -> str:
        """E.g. "12 photos: 9 ok, 1 uncertain, 2 failed in 3.4 s (3.53 photos/s)"; ok and failed always shown, the
        rate only when a photo was classified."""
        seconds = time.perf_counter() - self.started if self.seconds is None else self.seconds
        shown = [s for s in STATUSES if self.counts[s] or s in (OK, FAILED)]
        statuses = ", ".join(f"{self.counts[s]} {s}" for s in shown)
        line = f"{self.total} photo{'' if self.total == 1 else 's'}: {statuses} in {seconds:.1f} s"
        # A rate only when the model saw a photo, over a measurable time: failing at once is no speed.
        if self.total > self.counts[FAILED] and seconds >= MIN_SECONDS_FOR_RATE:
            line += f" ({self.total / seconds:.2f} photos/s)"
        return line

    def speed_line(self) -> str | None:
        """E.g. "Speed: 3.1 ms decode, 18.0 ms preprocess, 75.2 ms inference, 0.4 ms postprocess per photo", as
        `yolo predict` prints: the mean of the timed results' stages (photos done side by side by several workers
        overlap, so the stages add up to more than the wall time per photo). None when no result was timed."""
        if not self.timed:
            return None
        return f"Speed: {speed_text({stage: ms / self.timed for stage, ms in self.stage_ms.items()})} per photo"


def speed_text(speed: dict[str, float]) -> str:
    """"3.1 ms decode, 18.0 ms preprocess, ..." from milliseconds per stage, in pipeline order."""
    return ", ".join(f"{speed[stage]:.1f} ms {stage}" for stage in SPEED_STAGES if stage in speed)
