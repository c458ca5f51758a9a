"""Results as flat table rows: one Arrow schema for Parquet files and Ray Datasets, and the way back.

A row has the same columns whatever became of the photo (a failed photo has nulls where an ok one has numbers),
so that every Parquet file and every block of a Ray Dataset has one schema. pyarrow is imported only by the
functions that build tables: the rows themselves are plain dicts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, TextIO

from cassava_edge.errors import SourceError
from cassava_edge.results import SPEED_STAGES, Classification
from cassava_edge.writers import ResultWriter

if TYPE_CHECKING:
    import pyarrow

# Rows are written to Parquet in groups of this many: small enough that an interrupted run loses little.
PARQUET_ROW_GROUP = 1024


def result_row(result: Classification) -> dict[str, Any]:
    """The row of one result: source, status, ok, label, label_index, confidence, not_cassava_score,
    probabilities (label -> probability, None when failed), error and speed (milliseconds per stage, None when
    untimed: Ray's rows carry it back, so that a Ray run has its speed line too)."""
    return {
        "source": result.source,
        "status": result.status,
        "ok": result.ok,
        "label": result.label,
        "label_index": result.label_index,
        "confidence": result.confidence,
        "not_cassava_score": result.not_cassava_score,
        "probabilities": dict(result.probabilities) if result.ok else None,
        "error": result.error,
        "speed": None if result.speed is None else {stage: result.speed[stage] for stage in SPEED_STAGES},
    }


def classification_from_row(row: Mapping[str, Any], top_k: int = 3) -> Classification:
    """The Classification a row came from (without per-view probabilities, which rows do not keep)."""
    if not row["ok"]:
        return Classification.failed(row["source"], row["error"] or "unknown error")
    speed = row.get("speed")  # absent from files written before it was a column
    probabilities = {label: float(p) for label, p in row["probabilities"].items()}
    # Stable, like Classification.from_probabilities: ties rank in label order.
    ranked = sorted(probabilities.items(), key=lambda item: -item[1])
    label_index = row["label_index"]
    return Classification(
        source=row["source"],
        label=row["label"],
        label_index=None if label_index is None else int(label_index),
        confidence=float(row["confidence"]),
        probabilities=probabilities,
        top_k=ranked[:top_k],
        status=row["status"],
        not_cassava_score=row["not_cassava_score"],
        speed=None if speed is None else {stage: float(ms) for stage, ms in speed.items()},
    )


def row_schema(labels: Iterable[str]) -> "pyarrow.Schema":
    import pyarrow as pa

    return pa.schema([
        ("source", pa.string()),
        ("status", pa.string()),
        ("ok", pa.bool_()),
        ("label", pa.string()),
        ("label_index", pa.int64()),
        ("confidence", pa.float64()),
        ("not_cassava_score", pa.float64()),
        ("probabilities", pa.struct([(label, pa.float64()) for label in labels])),
        ("error", pa.string()),
        ("speed", pa.struct([(stage, pa.float64()) for stage in SPEED_STAGES])),
    ])


def rows_table(results: Iterable[Classification], labels: Iterable[str]) -> "pyarrow.Table":
    """The results as an Arrow table of `row_schema(labels)`."""
    import pyarrow as pa

    return pa.Table.from_pylist([result_row(result) for result in results], schema=row_schema(labels))


class ParquetWriter(ResultWriter):
    """Rows of `row_schema` in a Parquet file, a row group every PARQUET_ROW_GROUP photos (needs pyarrow)."""

    binary = True

    def __init__(self, stream: TextIO, labels: tuple[str, ...], top_k: int) -> None:
        super().__init__(stream, labels, top_k)
        self.pending: list[Classification] = []

    def start(self) -> None:
        import pyarrow.parquet as pq

        self.parquet = pq.ParquetWriter(self.stream, row_schema(self.labels))

    def write(self, result: Classification) -> None:
        self.pending.append(result)
        if len(self.pending) >= PARQUET_ROW_GROUP:
            self._flush_rows()

    def finish(self) -> None:
        self._flush_rows()
        self.parquet.close()

    def _flush_rows(self) -> None:
        if self.pending:
            self.parquet.write_table(rows_table(self.pending, self.labels))
            self.pending = []


def done_sources(path: str | Path) -> set[str]:
    """The photos an earlier run's JSON-lines results already hold (any status, failed included), as resolved real
    paths: a line's `real_path` (written by `classify --format jsonl`), else its source as written and resolved
    against the current folder. A last line cut off by an interrupted run is ignored: that photo runs again."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"cannot resume from {path}: no such file")
    done: set[str] = set()
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            source = row["source"]
        except (ValueError, KeyError, TypeError):
            if number == len(lines):
                break  # the line being written when the run stopped
            raise SourceError(f"cannot resume from {path}: line {number} is not a JSON result with a source") from None
        real_path = row.get("real_path")
        if isinstance(real_path, str):
            # Resolved by the run that wrote it, so it holds from any folder; the relative source as written is
            # left out, as it may name another photo in the folder we resume from.
            done.add(real_path)
            continue
        # A line without it (older runs, other tools): the source as written and resolved here, so `data/x.jpg`,
        # `/abs/data/x.jpg` and a symlinked spelling all match when resumed from the same folder.
        done.add(source)
        done.add(os.path.realpath(source))
    return done


def resume_from(path: str | Path) -> set[str]:
    """`done_sources(path)`, after making the file ready to append to: a last line cut off by an interrupted run
    is removed (that photo runs again) and a missing final newline is added."""
    path = Path(path)
    done = done_sources(path)
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        start = data.rfind(b"\n") + 1
        try:
            json.loads(data[start:])
            keep = data + b"\n"
        except ValueError:
            keep = data[:start]
        path.write_bytes(keep)
    return done


def not_done(photos: Iterable[Path], done: set[str]) -> list[Path]:
    """The photos whose source (as given or as its resolved real path) is not in `done`."""
    return [photo for photo in photos if str(photo) not in done and os.path.realpath(photo) not in done]
