"""Side-by-side comparison of runs, with paired tests on the images they share.

The first run is the baseline. For each other run and threshold: accuracy difference (over each
run's own rows, then over the shared rows) and McNemar's exact test on the shared rows (a failed
row is a miss); on the rows both runs scored, the Wilcoxon signed-rank test of the distances.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel
from scipy.stats import binomtest, wilcoxon

from evals.metrics import THRESHOLDS_KM
from evals.report import load_run, summarise
from retrieval_service.core.errors import DatasetError


class PairedTest(BaseModel):
    threshold_km: int
    baseline_acc: float
    other_acc: float
    diff: float
    only_baseline: int
    only_other: int
    p_mcnemar: float


class RunComparison(BaseModel):
    baseline: str
    other: str
    shared: int
    scored_both: int
    tests: list[PairedTest]
    median_diff_km: float | None
    p_wilcoxon: float | None


class Comparison(BaseModel):
    runs: list[str]
    modes: list[str | None]
    n: list[int]
    failed: list[int]
    median_km: list[float | None]
    accuracy_km: list[dict[str, float]]
    pairs: list[RunComparison]


def _hit(row: dict[str, Any], t: int) -> bool:
    d = row.get("distance_km")
    return not row.get("error") and d is not None and d <= t


def _pair(name_a: str, rows_a: list[dict], name_b: str, rows_b: list[dict]) -> RunComparison:
    by_b = {r["id"]: r for r in rows_b}
    shared = [(r, by_b[r["id"]]) for r in rows_a if r["id"] in by_b]
    tests = []
    for t in THRESHOLDS_KM:
        b = sum(1 for ra, rb in shared if _hit(ra, t) and not _hit(rb, t))
        c = sum(1 for ra, rb in shared if not _hit(ra, t) and _hit(rb, t))
        n = len(shared)
        acc_a = sum(_hit(ra, t) for ra, _ in shared) / n if n else 0.0
        acc_b = sum(_hit(rb, t) for _, rb in shared) / n if n else 0.0
        p = float(binomtest(b, b + c, 0.5).pvalue) if b + c else 1.0
        tests.append(
            PairedTest(
                threshold_km=t,
                baseline_acc=acc_a,
                other_acc=acc_b,
                diff=acc_b - acc_a,
                only_baseline=b,
                only_other=c,
                p_mcnemar=p,
            )
        )
    both = [
        (ra["distance_km"], rb["distance_km"])
        for ra, rb in shared
        if not ra.get("error") and not rb.get("error") and ra.get("distance_km") is not None and rb.get("distance_km") is not None
    ]
    p_w = None
    median_diff = None
    if both:
        diffs = sorted(b - a for a, b in both)
        median_diff = diffs[len(diffs) // 2] if len(diffs) % 2 else (diffs[len(diffs) // 2 - 1] + diffs[len(diffs) // 2]) / 2
        if any(d != 0 for d in diffs):
            p_w = float(wilcoxon([a for a, _ in both], [b for _, b in both]).pvalue)
    return RunComparison(
        baseline=name_a,
        other=name_b,
        shared=len(shared),
        scored_both=len(both),
        tests=tests,
        median_diff_km=median_diff,
        p_wilcoxon=p_w,
    )


def compare_runs(run_dirs: list[str | Path]) -> Comparison:
    """Compare two or more run directories; the first is the baseline."""
    if len(run_dirs) < 2:
        raise DatasetError("compare needs at least two run directories", "pass RUN_A RUN_B [RUN_C ...]")
    loaded = [(Path(d).name or str(d), *load_run(d)) for d in run_dirs]
    names = [name for name, _, _ in loaded]
    if len(set(names)) != len(names):
        names = [str(d) for d in run_dirs]
    summaries = [summarise(rows, config) for _, rows, config in loaded]
    pairs = [_pair(names[0], loaded[0][1], names[i], loaded[i][1]) for i in range(1, len(loaded))]
    for pair in pairs:
        if pair.shared == 0:
            raise DatasetError(
                f"runs {pair.baseline} and {pair.other} share no image id", "compare runs made on the same dataset"
            )
    return Comparison(
        runs=names,
        modes=[s.mode for s in summaries],
        n=[s.n for s in summaries],
        failed=[s.failed for s in summaries],
        median_km=[s.median_km for s in summaries],
        accuracy_km=[s.accuracy_km for s in summaries],
        pairs=pairs,
    )


def render_comparison(cmp: Comparison) -> str:
    """Markdown: accuracy side by side, then the paired differences and p-values per run."""
    head = "| run | mode | n | failed | median km | " + " | ".join(f"{t} km" for t in THRESHOLDS_KM) + " |"
    lines = ["# Run comparison", "", head, "|---|---|---:|---:|---:|" + "---:|" * len(THRESHOLDS_KM)]
    for i, name in enumerate(cmp.runs):
        med = "" if cmp.median_km[i] is None else f"{cmp.median_km[i]:.1f}"
        lines.append(
            f"| {name} | {cmp.modes[i]} | {cmp.n[i]} | {cmp.failed[i]} | {med} | "
            + " | ".join(f"{100 * cmp.accuracy_km[i][str(t)]:.2f}" for t in THRESHOLDS_KM)
            + " |"
        )
    for pair in cmp.pairs:
        lines += [
            "",
            f"## {pair.other} vs {pair.baseline} (paired on {pair.shared} shared images)",
            "",
            "| threshold | baseline % | other % | diff (pp) | only baseline | only other | McNemar exact p |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for t in pair.tests:
            lines.append(
                f"| {t.threshold_km} km | {100 * t.baseline_acc:.2f} | {100 * t.other_acc:.2f} | "
                f"{100 * t.diff:+.2f} | {t.only_baseline} | {t.only_other} | {t.p_mcnemar:.4g} |"
            )
        med = "n/a" if pair.median_diff_km is None else f"{pair.median_diff_km:+.1f} km"
        pw = "n/a (no differing pairs)" if pair.p_wilcoxon is None else f"{pair.p_wilcoxon:.4g}"
        lines += [
            "",
            f"Distances on the {pair.scored_both} images both scored: median difference (other − baseline) "
            f"{med}, Wilcoxon signed-rank p = {pw}.",
        ]
    return "\n".join(lines) + "\n"
