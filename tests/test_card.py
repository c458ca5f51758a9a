"""The model card's experiment rows are copied from the committed reports (training/card.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cassava_edge_training.card import figures_row, rows

ROOT = Path(__file__).resolve().parents[1]
REPORTS = sorted((ROOT / "training" / "experiments").glob("*/*.json"))


def _figures(top1: float) -> dict:
    return {"photos": 200, "top1": top1, "top1_ci95": [0.7, 0.8], "macro_recall": 0.6,
            "macro_recall_ci95": [0.5, 0.7], "recall": {"CBB": 0.1, "CBSD": 0.2, "CGM": 0.3, "CMD": 0.9,
                                                        "Healthy": 0.8}}


def test_a_row_carries_every_figure() -> None:
    row = figures_row("run", _figures(0.755), {"photos": 200, "flipped": 9, "share": 0.045})
    assert row == ("| run | 200 | 75.5% [70.0, 80.0] | 60.0% [50.0, 70.0] | 0.10 / 0.20 / 0.30 / 0.90 / 0.80 | "
                   "9/200 (4.5%) |")
    assert figures_row("run", _figures(0.756)) != figures_row("run", _figures(0.755))


def test_there_are_committed_reports() -> None:
    assert REPORTS, "training/experiments holds no report"


@pytest.mark.parametrize("report", REPORTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_row_of_a_committed_report_is_in_the_card_word_for_word(report: Path) -> None:
    card = (ROOT / "models" / "README.md").read_text(encoding="utf-8")
    missing = [row for row in rows(json.loads(report.read_text(encoding="utf-8"))) if row not in card]
    assert not missing, f"models/README.md lacks (or changed) these rows of {report.name}:\n" + "\n".join(missing)
