"""A not_cassava row in the table shows its not-cassava score, not the top disease probability (issue 19 item 6)."""

import io

from cassava_edge.results import NOT_CASSAVA, Classification
from cassava_edge.writers import TableWriter

LABELS = ("CBB", "CBSD", "CGM", "CMD", "Healthy")


def test_not_cassava_row_shows_its_score_and_no_disease_columns() -> None:
    classified = Classification(
        "leaf.jpg", "CBB", 0, 0.725, {"CBB": 0.725, "CBSD": 0.1, "CGM": 0.075, "CMD": 0.05, "Healthy": 0.05},
        [("CBB", 0.725)], None, None,
    )
    row = classified.judged(NOT_CASSAVA, not_cassava_score=0.981)
    stream = io.StringIO()
    writer = TableWriter(stream, LABELS, top_k=1)
    writer.start()
    writer.write(row)
    line = stream.getvalue().splitlines()[-1]
    assert "0.981" in line
    assert "0.725" not in line and "CBB" not in line
