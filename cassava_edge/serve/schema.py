"""The service's response bodies for the OpenAPI docs. A result row is `Classification.to_dict()`, the row that
`classify --format jsonl` writes; `ResultRow` describes it field for field (tests/test_serve.py checks the two
against each other, so the docs cannot drift from what is sent)."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, Field

from cassava_edge.results import STATUSES


class TopClass(BaseModel):
    label: str
    probability: float


class ResultRow(BaseModel):
    """One photo's result. `label`/`label_index` are set only when `status` is ok; a failed photo has `error`,
    empty probabilities and top_k."""

    source: str = Field(description="The upload's file name, or 'upload' for a raw body.")
    status: Literal[STATUSES] = Field(description="ok, uncertain, not_cassava or failed.")  # type: ignore[valid-type]
    ok: bool = Field(description="True when the photo was classified (any status but failed).")
    label: Optional[str]
    label_index: Optional[int]
    confidence: Optional[float] = Field(description="Calibrated probability of the top class.")
    probabilities: dict[str, float] = Field(description="Every class's probability, by label.")
    top_k: list[TopClass]
    not_cassava_score: Optional[float]
    error: Optional[str] = Field(description="Why the photo could not be classified (failed only).")


class BatchRows(BaseModel):
    results: list[ResultRow] = Field(description="One row per photo, in the order they were sent.")


class ErrorBody(BaseModel):
    error: str = Field(description="What went wrong, in one line.")
    option: Optional[str] = Field(default=None, description="The query option that was refused, if one was.")
