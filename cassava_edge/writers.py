"""Result writers: table, json, jsonl and csv, each writing one Classification at a time.

They live in the runtime (not the CLI) so that apps and other tools can write the same formats as the
`cassava-edge classify` command.
"""

from __future__ import annotations

import csv
import json
from typing import TextIO

from cassava_edge.results import Classification

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
    """Aligned columns for people; failed files appear only on stderr."""

    def start(self) -> None:
        self.width = max(len("label"), *(len(label) for label in self.labels))
        # Each top-k entry is "<label> 0.123", joined by ", ".
        self.top_width = self.top_k * (self.width + 6) + 2 * (self.top_k - 1)
        self.stream.write(f"{'label':<{self.width}}  confidence  {'top-k':<{self.top_width}}  source\n")

    def _write(self, result: Classification) -> None:
        if not result.ok:
            return
        top = ", ".join(f"{label} {p:.3f}" for label, p in result.top_k)
        self.stream.write(
            f"{result.label:<{self.width}}  {result.confidence:>10.3f}  {top:<{self.top_width}}  {result.source}\n"
        )


class JsonlWriter(ResultWriter):
    """One JSON object per line, failed files included with ok false and their error."""

    def _write(self, result: Classification) -> None:
        self.stream.write(json.dumps(result.to_dict()) + "\n")


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
    """source, ok, label, confidence, one probability column per label, error."""

    def start(self) -> None:
        self.writer = csv.writer(self.stream, lineterminator="\n")
        self.writer.writerow(["source", "ok", "label", "confidence", *self.labels, "error"])

    def _write(self, result: Classification) -> None:
        probs = [f"{result.probabilities[label]:.6f}" if result.ok else "" for label in self.labels]
        confidence = f"{result.confidence:.6f}" if result.confidence is not None else ""
        self.writer.writerow([result.source, result.ok, result.label or "", confidence, *probs, result.error or ""])


WRITERS: dict[str, type[ResultWriter]] = {
    "table": TableWriter,
    "json": JsonWriter,
    "jsonl": JsonlWriter,
    "csv": CsvWriter,
}
