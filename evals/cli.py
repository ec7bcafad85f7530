"""`geoagent eval`: run a benchmark, rebuild its reports, compare runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from agent.cli.context import settings_from
from agent.modes import available_modes, check_mode
from evals.compare import compare_runs, render_comparison
from evals.datasets import LAYOUTS, load_dataset
from evals.report import REPORT_FILE, SUMMARY_FILE, write_reports
from evals.runner import default_factory, import_factory, run_eval
from evals.settings import EvalRunSettings

app = typer.Typer(
    help=(
        "Benchmark evaluation: IM2GPS, IM2GPS3k, YFCC4k, YFCC26k or any CSV of image ids and coordinates. "
        "Runs are resumable JSONL files with full traces; reports follow the papers' tables."
    ),
    no_args_is_help=True,
    add_completion=False,
)


def _print_summary(run_dir: Path, settings: EvalRunSettings | None = None) -> None:
    summary = write_reports(run_dir, settings=settings)
    acc = " ".join(f"{t}km={100 * v:.1f}%" for t, v in summary.accuracy_km.items())
    med = "n/a" if summary.median_km is None else f"{summary.median_km:.1f} km"
    typer.echo(
        f"{run_dir}: n={summary.n} failed={summary.failed} median={med} {acc} "
        f"country={100 * summary.country_accuracy:.1f}% geoscore={summary.geoscore:.0f}"
    )
    typer.echo(f"wrote {run_dir / SUMMARY_FILE}, {run_dir / REPORT_FILE} and the plots")


@app.command("run")
def run_command(
    ctx: typer.Context,
    images: Annotated[Path, typer.Option("--images", help="Folder holding the benchmark photos (file name = the CSV id).")],
    labels: Annotated[
        Path, typer.Option("--labels", help="CSV of ids and ground-truth coordinates, e.g. im2gps3k_places365.csv.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Run directory; an existing one is resumed (finished ids are skipped).")],
    dataset: Annotated[
        str, typer.Option("--dataset", help=f"CSV layout: {', '.join(LAYOUTS)}. Columns are found by name, any order.")
    ] = "im2gps3k",
    mode: Annotated[
        str,
        typer.Option(
            "--mode",
            help=(
                "How to predict: policy (tools in a fixed order, no LMM), agent (LMM drives the tools), rag "
                f"(LMM over retrieved candidates), retrieval (top-1 gallery), rerank (cluster re-rank of the gallery). "
                f"Available: {', '.join(available_modes())}."
            ),
        ),
    ] = "policy",
    limit: Annotated[int | None, typer.Option("--limit", help="Evaluate only the first N images that have a file.")] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            max=256,
            help="Predictions running at once (threads; default GEOAGENT_EVAL_WORKERS, 1); one writer keeps the file consistent.",
        ),
    ] = None,
    id_col: Annotated[
        str | None, typer.Option("--id-col", help="Name of the image id column (default: IMG_ID, id, image, ...).")
    ] = None,
    lat_col: Annotated[
        str | None, typer.Option("--lat-col", help="Name of the latitude column (default: LAT, latitude, lat).")
    ] = None,
    lon_col: Annotated[
        str | None, typer.Option("--lon-col", help="Name of the longitude column (default: LON, longitude, lon, lng).")
    ] = None,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="On resume, run again the images whose row has an error.")
    ] = False,
    predictor: Annotated[
        str | None,
        typer.Option(
            "--predictor",
            help=(
                "Use another predictor factory, 'module:function' called as function(settings, mode=MODE) and returning an "
                "object with .invoke({'image': path}); default: agent.load_agent."
            ),
        ),
    ] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="Hide the progress bar.")] = False,
) -> None:
    """Evaluate a benchmark: one JSONL row per image, then summary.json, report.md and plots."""
    check_mode(mode)
    settings = settings_from(ctx, EvalRunSettings)
    data = load_dataset(dataset, labels, images, id_col=id_col, lat_col=lat_col, lon_col=lon_col)
    factory = import_factory(predictor) if predictor else default_factory
    result = run_eval(
        data,
        out,
        settings=settings,
        mode=mode,
        factory=factory,
        predictor_name=predictor,
        limit=limit,
        workers=workers or settings.eval_workers,
        retry_failed=retry_failed,
        progress=not no_progress,
        argv=sys.argv,
        report=False,
    )
    typer.echo(
        f"{result.written} new row(s), {result.resumed} resumed, {result.failed} failed this time, "
        f"{result.missing} missing image(s) excluded, {result.invalid} bad label row(s) recorded as failed"
    )
    _print_summary(out, settings)


@app.command("report")
def report_command(
    ctx: typer.Context,
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `geoagent eval run`.")],
) -> None:
    """Rebuild summary.json, report.md and the PNG plots from a run's predictions.jsonl."""
    _print_summary(run_dir, settings_from(ctx, EvalRunSettings))


@app.command("compare")
def compare_command(
    runs: Annotated[list[Path], typer.Argument(help="Two or more run directories; the first is the baseline.")],
    out: Annotated[Path | None, typer.Option("--out", help="Also write the table to this Markdown file.")] = None,
) -> None:
    """Side-by-side accuracy, per-threshold differences, McNemar exact and Wilcoxon tests on shared images."""
    text = render_comparison(compare_runs(list(runs)))
    typer.echo(text)
    if out:
        out.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {out}")
