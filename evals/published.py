"""Published accuracies of other methods (``evals/data/published.csv``), each with its source paper.

Numbers are percentages at 1/25/200/750/2500 km; an empty cell means the figure was not
transcribed (never guessed).
"""

from __future__ import annotations

import csv
from importlib.resources import files

from pydantic import BaseModel

from evals.metrics import THRESHOLDS_KM


class PublishedResult(BaseModel):
    method: str
    variant: str = ""
    dataset: str
    accuracy_pct: dict[str, float | None]
    source: str

    @property
    def label(self) -> str:
        return f"{self.method} ({self.variant})" if self.variant else self.method


def load_published(dataset: str | None = None) -> list[PublishedResult]:
    """Published rows, optionally only those of one dataset (e.g. 'im2gps3k', 'yfcc4k')."""
    text = files("evals").joinpath("data", "published.csv").read_text(encoding="utf-8")
    out: list[PublishedResult] = []
    for row in csv.DictReader(text.splitlines()):
        if dataset and row["dataset"] != dataset:
            continue
        acc = {str(t): (float(row[f"acc_{t}"]) if row[f"acc_{t}"].strip() else None) for t in THRESHOLDS_KM}
        out.append(
            PublishedResult(
                method=row["method"], variant=row["variant"], dataset=row["dataset"], accuracy_pct=acc, source=row["source"]
            )
        )
    return out
