"""Reports of a run directory: summary.json, report.md (the papers' table layout, beside published
figures) and the PNG plots. ``write_reports(run_dir)`` rebuilds them all from predictions.jsonl."""

from __future__ import annotations

import json
import logging
import statistics
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from evals.confidence import ConfidenceMetrics, confidence_metrics
from evals.metrics import DISTANCE_METHOD, THRESHOLD_NAMES, THRESHOLDS_KM, accuracy, bootstrap_ci, geoscore
from evals.plots import plot_accuracy_curve, plot_confidence, plot_error_map
from evals.published import load_published
from evals.records import PREDICTIONS_FILE, read_rows
from evals.run_info import CONFIG_FILE, ImageModelInfo, SplitInfo, image_model_info, split_info
from evals.settings import EvalSettings
from evals.usage import UsageSummary, summarise_usage, usage_markdown
from retrieval_service.core.errors import DatasetError
from retrieval_service.core.geo import country_codes

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.md"
ACCURACY_PNG = "accuracy_vs_threshold.png"
MAP_PNG = "error_map.png"
CONFIDENCE_PNG = "confidence.png"
BOOTSTRAP_SEED = EvalSettings.model_fields["eval_bootstrap_seed"].default
BOOTSTRAP_RESAMPLES = EvalSettings.model_fields["eval_bootstrap_resamples"].default


class Summary(BaseModel):
    """The contract of summary.json (fractions in [0, 1]; distances in km)."""

    n: int
    failed: int
    fallback: int = 0
    scored: int
    median_km: float | None
    mean_km: float | None
    accuracy_km: dict[str, float]
    accuracy_ci95: dict[str, tuple[float, float]]
    geoscore: float
    country_accuracy: float
    country_ci95: tuple[float, float]
    mean_latency_ms: float | None
    distance_method: str = DISTANCE_METHOD
    bootstrap: dict[str, int] = Field(default_factory=lambda: {"resamples": BOOTSTRAP_RESAMPLES, "seed": BOOTSTRAP_SEED})
    mode: str | None = None
    dataset: str | None = None
    missing_images: int = 0
    usage: UsageSummary | None = None
    confidence: ConfidenceMetrics | None = None
    split: SplitInfo | None = Field(default=None, description="Which part of the benchmark the run covers, and its size.")
    image_model: ImageModelInfo | None = Field(default=None, description="The image model and weights behind the predictions.")


def load_run(run_dir: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows and config of a run directory; DatasetError when it holds no run."""
    run_dir = Path(run_dir)
    path = run_dir / PREDICTIONS_FILE
    if not path.exists():
        raise DatasetError(f"{run_dir} holds no {PREDICTIONS_FILE}", "pass the --out directory of a `geoagent eval run`")
    config_path = run_dir / CONFIG_FILE
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.exists() else {}
    return read_rows(path), config


def _fill_countries(rows: list[dict[str, Any]]) -> None:
    """Reverse geocode (in one batch) any country a row lacks, e.g. rows written by older versions."""
    need_gt = [r for r in rows if r.get("country_gt") is None and r.get("gt")]
    need_pred = [r for r in rows if r.get("country_pred") is None and r.get("pred")]
    codes = country_codes(
        [(r["gt"]["lat"], r["gt"]["lon"]) for r in need_gt] + [(r["pred"]["lat"], r["pred"]["lon"]) for r in need_pred]
    )
    for r, cc in zip(need_gt, codes[: len(need_gt)], strict=True):
        r["country_gt"] = cc
    for r, cc in zip(need_pred, codes[len(need_gt) :], strict=True):
        r["country_pred"] = cc


def summarise(
    rows: list[dict[str, Any]],
    config: dict[str, Any] | None = None,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Summary:
    """Metrics over all rows: accuracy counts failed rows as misses; median/mean over scored rows."""
    config = config or {}
    _fill_countries(rows)
    distances = [r.get("distance_km") if not r.get("error") else None for r in rows]
    scored = [d for d in distances if d is not None]
    country_hits = [
        0.0 if (not r.get("error") and r.get("country_gt") and r.get("country_gt") == r.get("country_pred")) else None
        for r in rows
    ]
    # country accuracy reuses the bootstrap over a 0/inf encoding: a hit is distance 0 < 1
    country_ci = bootstrap_ci(country_hits, (1,), resamples=resamples, seed=seed)["1"]
    latencies = [r["latency_ms"] for r in rows if isinstance(r.get("latency_ms"), (int, float))]
    return Summary(
        n=len(rows),
        failed=sum(1 for r in rows if r.get("error")),
        fallback=sum(1 for r in rows if not r.get("error") and r.get("source") == "fallback"),
        scored=len(scored),
        median_km=statistics.median(scored) if scored else None,
        mean_km=statistics.fmean(scored) if scored else None,
        accuracy_km=accuracy(distances),
        accuracy_ci95=bootstrap_ci(distances, resamples=resamples, seed=seed),
        geoscore=statistics.fmean(geoscore(d) for d in distances) if rows else 0.0,
        country_accuracy=(sum(1 for c in country_hits if c is not None) / len(rows)) if rows else 0.0,
        country_ci95=country_ci,
        mean_latency_ms=statistics.fmean(latencies) if latencies else None,
        mode=config.get("mode"),
        dataset=(config.get("dataset") or {}).get("name"),
        missing_images=(config.get("dataset") or {}).get("missing_images", 0),
        usage=summarise_usage(rows, config.get("settings")),
        confidence=confidence_metrics(rows),
        split=split_info(config, len(rows)) if config.get("dataset") else None,
        image_model=image_model_info(config) if config.get("settings") else None,
    )


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.2f}"


def _confidence_lines(conf: ConfidenceMetrics | None) -> list[str]:
    """The calibration section: ECE and Brier per threshold, the plots, Recall-vs-Area at a few budgets."""
    if conf is None:
        return ["## Confidence", "", "This run's rows carry no probabilities (an older run).", ""]
    keys = [str(t) for t in THRESHOLDS_KM]
    budgets = {a: r for a, r in conf.recall_vs_area}
    shown = [a for a in (1e2, 1e4, 1e6) if a in budgets]
    return [
        "## Confidence",
        "",
        f"{conf.rows} rows with probabilities, {conf.calibrated_rows} of them calibrated "
        "(`geoagent calibrate`, fitted on other labelled runs, never on this benchmark).",
        "",
        "| P(error <= t) | " + " | ".join(f"{k} km" for k in keys) + " |",
        "|---|" + "---:|" * len(keys),
        "| ECE | " + " | ".join(f"{conf.ece[k]:.4f}" for k in keys) + " |",
        "| Brier | " + " | ".join(f"{conf.brier[k]:.4f}" for k in keys) + " |",
        "",
        "Recall vs area (share of photos whose true location lies in a 90% region of at most A km2): "
        + ", ".join(f"A = {a:.0e}: {_pct(budgets[a])}%" for a in shown)
        + ".",
        "",
        f"![reliability and recall vs area]({CONFIDENCE_PNG})",
        "",
    ]


def render_markdown(summary: Summary, config: dict[str, Any], run_name: str) -> str:
    """report.md: the papers' table (street/city/region/country/continent), published rows beside."""
    dataset = summary.dataset or "?"
    header = "| Method | Street 1 km | City 25 km | Region 200 km | Country 750 km | Continent 2500 km |"
    rule = "|---|---:|---:|---:|---:|---:|"
    ours = (
        "| **this run** ("
        + (summary.mode or "?")
        + (", random weights" if summary.image_model is not None and summary.image_model.random_weights else "")
        + ") | "
        + " | ".join(_pct(summary.accuracy_km[str(t)]) for t in THRESHOLDS_KM)
        + " |"
    )
    ci = (
        "| 95% CI (bootstrap) | "
        + " | ".join(f"{_pct(summary.accuracy_ci95[str(t)][0])}–{_pct(summary.accuracy_ci95[str(t)][1])}" for t in THRESHOLDS_KM)
        + " |"
    )
    lines = [f"# Evaluation: {run_name}", ""]
    if summary.image_model is not None and summary.image_model.note:
        lines += [f"> **WARNING: {summary.image_model.note}**", ""]
    if summary.split is not None and not summary.split.full and summary.split.published_size:
        lines += [
            f"> **Not the benchmark:** {summary.split.label}. The published rows below are on the full test set "
            f"of {summary.split.published_size} photos and are not directly comparable.",
            "",
        ]
    versions = config.get("versions", {})
    split = summary.split.label if summary.split is not None else dataset
    lines += [
        f"- dataset: **{split}** ({(config.get('dataset') or {}).get('labels', '?')}), mode: **{summary.mode}**",
        "- image model: "
        + (
            f"**{summary.image_model.label()}**" + (" (random weights)" if summary.image_model.random_weights else "")
            if summary.image_model is not None
            else "not recorded (an older run)"
        ),
        f"- images: {summary.n} evaluated, {summary.failed} failed (counted as misses), "
        f"{summary.missing_images} excluded because the image file is missing, "
        f"{summary.fallback} answered by the no-evidence fallback (scored as given)",
        f"- distance: {summary.distance_method}; accuracy = share of all {summary.n} images with error <= threshold",
        f"- versions: geoagent {versions.get('geoagent')}, torch {versions.get('torch')}, open_clip {versions.get('open_clip')}, "
        f"commit {versions.get('git_commit')}",
        "",
        "## Accuracy (%)",
        "",
        header,
        rule,
        ours,
        ci,
    ]
    published = load_published(dataset)
    for p in published:
        lines.append(
            f"| {p.label} | "
            + " | ".join("" if p.accuracy_pct[str(t)] is None else f"{p.accuracy_pct[str(t)]:.2f}" for t in THRESHOLDS_KM)
            + " |"
        )
    if not published:
        lines += ["", f"No published figures on file for dataset '{dataset}' (published tables cover im2gps3k and yfcc4k)."]
    elif summary.split is not None and not summary.split.full:
        lines += [
            "",
            f"Note: this run covers {summary.split.label}, not the full benchmark; "
            "the published rows are on the full test set and are not directly comparable.",
        ]
    lines += [
        "",
        "## Other metrics",
        "",
        "| metric | value |",
        "|---|---:|",
        f"| median error (km, scored rows) | {'' if summary.median_km is None else f'{summary.median_km:.1f}'} |",
        f"| mean error (km, scored rows) | {'' if summary.mean_km is None else f'{summary.mean_km:.1f}'} |",
        f"| GeoScore (mean, failed = 0) | {summary.geoscore:.1f} |",
        f"| country accuracy (%) | {_pct(summary.country_accuracy)} ({_pct(summary.country_ci95[0])}–{_pct(summary.country_ci95[1])}) |",
        f"| mean latency (ms) | {'' if summary.mean_latency_ms is None else f'{summary.mean_latency_ms:.0f}'} |",
        "",
        *usage_markdown(summary.usage),
        f"![accuracy vs threshold]({ACCURACY_PNG})",
        "",
        f"![error map]({MAP_PNG})",
        "",
        *_confidence_lines(summary.confidence),
        "## Sources of the published figures",
        "",
    ]
    lines += [f"- {p.label} ({p.dataset}): {p.source}" for p in published] or ["- none"]
    lines += ["", "Thresholds: " + ", ".join(f"{THRESHOLD_NAMES[t]} {t} km" for t in THRESHOLDS_KM) + "."]
    return "\n".join(lines) + "\n"


def write_reports(run_dir: str | Path, *, plots: bool = True, settings: EvalSettings | None = None) -> Summary:
    """(Re)write summary.json, report.md and the PNG plots of a run directory (bootstrap settings
    from ``settings``, else the defaults)."""
    run_dir = Path(run_dir)
    rows, config = load_run(run_dir)
    if settings is None:
        summary = summarise(rows, config)
    else:
        summary = summarise(rows, config, resamples=settings.eval_bootstrap_resamples, seed=settings.eval_bootstrap_seed)
    summary.bootstrap = {
        "resamples": settings.eval_bootstrap_resamples if settings else BOOTSTRAP_RESAMPLES,
        "seed": settings.eval_bootstrap_seed if settings else BOOTSTRAP_SEED,
    }
    (run_dir / SUMMARY_FILE).write_text(summary.model_dump_json(indent=2), encoding="utf-8")
    (run_dir / REPORT_FILE).write_text(render_markdown(summary, config, run_dir.name), encoding="utf-8")
    if plots:
        distances = [r.get("distance_km") if not r.get("error") else None for r in rows]
        plot_accuracy_curve({f"{run_dir.name} ({summary.mode})": distances}, run_dir / ACCURACY_PNG)
        labelled = [(r, d) for r, d in zip(rows, distances, strict=True) if r.get("gt")]  # a bad label row has no ground truth
        plot_error_map(
            [(r["gt"]["lat"], r["gt"]["lon"]) for r, _ in labelled],
            [(r["pred"]["lat"], r["pred"]["lon"]) if r.get("pred") else None for r, _ in labelled],
            [d for _, d in labelled],
            run_dir / MAP_PNG,
            title=f"{run_dir.name}: error by ground-truth location",
        )
        if summary.confidence is not None:
            plot_confidence(summary.confidence.reliability, summary.confidence.recall_vs_area, run_dir / CONFIDENCE_PNG)
    log.info("reports written to %s", run_dir)
    return summary
