"""Confidence metrics of a run: ECE, Brier, reliability, Recall-vs-Area, and the report section."""

from __future__ import annotations

import math

import pytest

from evals.confidence import brier, confidence_metrics, ece, recall_vs_area, reliability
from evals.report import render_markdown, summarise


def test_perfect_and_wrong_forecasts():
    assert ece([1.0, 0.0, 1.0], [True, False, True]) == 0.0 and brier([1.0, 0.0], [True, False]) == 0.0
    assert ece([0.9] * 10, [False] * 10) == pytest.approx(0.9) and brier([0.9] * 10, [False] * 10) == pytest.approx(0.81)
    assert reliability([0.05, 0.07, 0.95], [False, True, True]) == [(pytest.approx(0.06), 0.5, 2), (0.95, 1.0, 1)]


def test_recall_vs_area_counts_the_truth_inside_the_region():
    # row 1: area pi*100^2 km2 (radius 100 km), error 50 -> inside; row 2: error 150 -> outside; row 3 failed
    curve = dict(recall_vs_area([math.pi * 1e4, math.pi * 1e4, None], [50.0, 150.0, None], grid=[1e3, 1e5]))
    assert curve == {1e3: 0.0, 1e5: pytest.approx(1 / 3)}


def test_report_has_a_confidence_section():
    rows = [
        {
            "id": str(i),
            "distance_km": d,
            "error": None,
            "source": "gallery",
            "latency_ms": 1.0,
            "country_gt": None,
            "country_pred": None,
            "probabilities": {"1": 0.0, "25": p, "200": p, "750": p, "2500": 1.0},
            "search_area_km2": {"50": 100.0, "90": 1e4},
            "calibrated": False,
        }
        for i, (d, p) in enumerate([(10.0, 0.8), (3000.0, 0.7), (20.0, 0.9), (500.0, 0.1)])
    ]
    summary = summarise(rows, {"mode": "policy"}, resamples=10)
    assert summary.confidence.ece["25"] == pytest.approx(ece([0.8, 0.7, 0.9, 0.1], [True, False, True, False]), abs=1e-4)
    text = render_markdown(summary, {"mode": "policy"}, "run")
    assert "## Confidence" in text and "| ECE |" in text and "| Brier |" in text and "confidence.png" in text
    assert confidence_metrics([{"id": "1", "distance_km": 1.0, "error": None}]) is None
