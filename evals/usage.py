"""What the LMM cost over a run: every row carries the Prediction's ``usage`` (calls, input and output
tokens, seconds; zeros when no LMM ran); the report gives the totals, the mean and median per photo,
and the money when prices per token are configured (``GEOAGENT_LLM_PRICE_INPUT_PER_MTOK`` /
``..._OUTPUT_PER_MTOK``, read from the run's recorded settings)."""

from __future__ import annotations

import statistics
from typing import Any

from pydantic import BaseModel, Field

USAGE_KEYS = ("calls", "input_tokens", "output_tokens", "seconds")


class UsageStat(BaseModel):
    total: float
    mean: float
    median: float


class UsageSummary(BaseModel):
    """LMM usage per photo over the rows that ran (failed rows count as zero)."""

    photos: int
    calls: UsageStat
    input_tokens: UsageStat
    output_tokens: UsageStat
    seconds: UsageStat
    cost: UsageStat | None = Field(default=None, description="Money, in the unit of the configured prices (None without prices).")


def row_usage(prediction: Any) -> dict[str, float]:
    """The ``usage`` column of an eval row (zeros for a predictor without one, or a failed row)."""
    usage = getattr(prediction, "usage", None)
    values = usage.model_dump() if hasattr(usage, "model_dump") else dict(usage or {})
    return {k: values.get(k, 0) or 0 for k in USAGE_KEYS}


def _stat(values: list[float]) -> UsageStat:
    return UsageStat(
        total=round(sum(values), 6), mean=round(statistics.fmean(values), 6), median=round(statistics.median(values), 6)
    )


def summarise_usage(rows: list[dict[str, Any]], settings: dict[str, Any] | None = None) -> UsageSummary | None:
    """The usage summary of ``rows``; None when no row has a ``usage`` (runs written before it existed)."""
    if not rows or not any(isinstance(r.get("usage"), dict) for r in rows):
        return None
    per = [{k: float((r.get("usage") or {}).get(k, 0) or 0) for k in USAGE_KEYS} for r in rows]
    settings = settings or {}
    p_in, p_out = settings.get("llm_price_input_per_mtok"), settings.get("llm_price_output_per_mtok")
    cost = None
    if p_in is not None or p_out is not None:
        cost = _stat([(u["input_tokens"] * (p_in or 0.0) + u["output_tokens"] * (p_out or 0.0)) / 1e6 for u in per])
    return UsageSummary(photos=len(rows), cost=cost, **{k: _stat([u[k] for u in per]) for k in USAGE_KEYS})


def usage_markdown(usage: UsageSummary | None) -> list[str]:
    """The report's "LMM usage" section."""
    if usage is None:
        return []
    lines = ["## LMM usage (per photo)", "", "| | total | mean | median |", "|---|---:|---:|---:|"]
    for key, label, fmt in (
        ("calls", "requests", ".0f"),
        ("input_tokens", "input tokens", ".0f"),
        ("output_tokens", "output tokens", ".0f"),
        ("seconds", "LMM seconds", ".2f"),
    ):
        stat: UsageStat = getattr(usage, key)
        lines.append(f"| {label} | {stat.total:{fmt}} | {stat.mean:.2f} | {stat.median:{fmt}} |")
    if usage.cost is not None:
        lines.append(f"| cost | {usage.cost.total:.4f} | {usage.cost.mean:.6f} | {usage.cost.median:.6f} |")
    else:
        lines += ["", "No price per token is configured (GEOAGENT_LLM_PRICE_INPUT_PER_MTOK / _OUTPUT_PER_MTOK): no cost shown."]
    return [*lines, ""]
