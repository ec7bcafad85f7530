"""`geoagent locate PHOTO...`: where was each photo taken, with the reasons."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from agent.cli.context import settings_from
from agent.modes import available_modes, check_mode
from agent.prediction import Prediction, Usage
from retrieval_service.core.errors import GeoAgentError
from retrieval_service.core.photo import Photo
from retrieval_service.evidence.exif import ExifInfo
from retrieval_service.retrieval.settings import MAX_TOP_K

if TYPE_CHECKING:
    from agent.api import GeoAgent

log = logging.getLogger(__name__)


def prediction_json(pred: Prediction) -> dict:
    """The ``--json`` row: image, lat, lon, candidates [{lat, lon, score}] plus every Prediction field."""
    row = pred.model_dump(mode="json")
    row["candidates"] = [{"lat": c.lat, "lon": c.lon, "score": c.score, "source": c.source} for c in pred.candidates]
    return row


def usage_text(usage: Usage, cost: float | None = None) -> str:
    """LMM usage in one line: requests, tokens, seconds (and money when prices are configured)."""
    money = f", cost {cost:.4f}" if cost is not None else ""
    return (
        f"{usage.calls} LMM requests, {usage.input_tokens} input + {usage.output_tokens} output tokens, "
        f"{usage.seconds:.1f} s{money}"
    )


def _area(km2: float) -> str:
    return "under 0.1 km²" if km2 <= 0 else f"{km2:,.0f} km²" if km2 >= 10 else f"{km2:.2g} km²"


def exif_line(exif: ExifInfo | None) -> str | None:
    """The EXIF details worth showing (capture time, camera, GPS altitude), or None."""
    if exif is None:
        return None
    parts = [f"taken {exif.datetime}"] if exif.datetime else []
    parts += [f"camera {exif.camera}"] if exif.camera else []
    if exif.gps is not None and exif.gps.altitude_m is not None:
        parts.append(f"altitude {exif.gps.altitude_m:.0f} m")
    return " · ".join(parts) or None


def format_text(
    pred: Prediction, n_alternatives: int, cost: float | None = None, exif: ExifInfo | None = None, confidence_km: float = 25
) -> str:
    """One photo's block: the answer and its place, how sure (P(error <= t) for each threshold), how
    large an area to search, the alternatives with their places, the EXIF details, why."""
    place = pred.place.label("unknown place")
    sure = f"P(within {confidence_km:g} km) = {pred.confidence:.2f}" + (" (calibrated)" if pred.calibrated else "")
    lines = [
        f"{pred.image}",
        f"  answer:      {pred.lat:.5f}, {pred.lon:.5f}  ({place})",
        f"  confidence:  {sure}  source: {pred.source}  mode: {pred.mode}",
    ]
    if pred.probabilities:
        lines.append("  P(error <=): " + " · ".join(f"{t} km {100 * v:.0f}%" for t, v in pred.probabilities.items()))
    if pred.search_area_km2:
        lines.append("  search area: " + " · ".join(f"{k}% in {_area(v)}" for k, v in pred.search_area_km2.items()))
    from agent.decision.summary import named

    for i, a in enumerate(named(pred.alternatives[:n_alternatives]), 1):
        where = f"  {a.place.label()}" if a.place is not None and a.place.label() else ""
        share = f"  ({100 * a.probability:.1f}% of the probability)" if a.probability is not None else f"  ({a.source})"
        lines.append(f"  alternative {i}: {a.lat:.4f}, {a.lon:.4f}{where}{share}")
    details = exif_line(exif)
    if details:
        lines.append(f"  exif:        {details}")
    lines.append(f"  why: {pred.rationale}")
    if pred.usage.calls:
        lines.append(f"  lmm usage:   {usage_text(pred.usage, cost)}")
    lines += [f"  warning: {w}" for w in pred.warnings]
    return "\n".join(lines)


def _exif_of(photo: Photo, settings: Any) -> ExifInfo | None:
    """The photo's EXIF for the human output (None when it cannot be read: it is only shown)."""
    from retrieval_service.evidence.exif import read_exif

    try:
        return read_exif(photo.path, settings)
    except GeoAgentError as exc:
        log.info("no EXIF details for %s: %s", photo.ref, exc.message)
        return None


def error_json(image: str, exc: BaseException) -> dict:
    """The ``--json`` row of a failed photo: the input as given and ``error`` {type, message, fix}; no lat/lon."""
    if isinstance(exc, GeoAgentError):
        error = {"type": type(exc).__name__, "message": exc.message, "fix": exc.hint}
    else:
        error = {
            "type": type(exc).__name__,
            "message": str(exc) or type(exc).__name__,
            "fix": "run again with --debug before the sub-command for the full traceback",
        }
    return {"image": image, "error": error}


def _report_failure(photo: str, exc: BaseException, as_json: bool) -> None:
    what = exc.message if isinstance(exc, GeoAgentError) else f"{type(exc).__name__}: {exc}"
    typer.echo(f"error: {photo}: {what}", err=True)
    if isinstance(exc, GeoAgentError) and exc.hint:
        typer.echo(f"  fix: {exc.hint}", err=True)
    if as_json:
        _emit_json(error_json(photo, exc))


def _emit_json(row: dict) -> None:
    sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _attempt(agent: GeoAgent, photo: Photo) -> Prediction | BaseException:
    """One photo's Prediction, or the exception that stopped it (reported in its place; the others go on)."""
    try:
        return agent.invoke({"image": photo})
    except Exception as exc:
        return exc


def locate(
    ctx: typer.Context,
    photos: Annotated[list[str], typer.Argument(help="Photo files or http(s) URLs.", metavar="PHOTO")],
    mode: Annotated[
        str | None,
        typer.Option(
            "--mode",
            metavar="MODE",
            help=f"One of {', '.join(available_modes())}; default: agent with an LMM configured, else policy.",
        ),
    ] = None,
    top_k: Annotated[
        int | None,
        typer.Option(
            "--top-k",
            min=1,
            max=MAX_TOP_K,
            metavar="N",
            help=f"Retrieval candidates per photo (1..{MAX_TOP_K}; default GEOAGENT_TOP_K, 20).",
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help='Exactly one JSON object per photo per line, in order; a failed photo\'s has "error": {type, message, fix} and no lat/lon.',
        ),
    ] = False,
    map_file: Annotated[
        Path | None, typer.Option("--map", metavar="FILE.html", help="Write a self-contained HTML map here (works offline).")
    ] = None,
    alternatives: Annotated[
        int, typer.Option("--alternatives", min=0, max=20, metavar="N", help="Alternatives shown per photo.")
    ] = 3,
    rag_samples: Annotated[
        int | None,
        typer.Option(
            "--rag-samples",
            min=1,
            max=20,
            metavar="N",
            help=("Mode rag: replies sampled per prompt (at GEOAGENT_RAG_TEMPERATURE), voted on before verification."),
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            metavar="N",
            help="Photos located at once (their images are encoded together by the encoder's micro-batcher); "
            "answers are still printed in the order given.",
        ),
    ] = 1,
) -> None:
    """Geolocate photos: the answer and its place, P(error <= 1, 25, 200, 750, 2500 km), the search
    areas, the alternatives with their places, EXIF details and the rationale.

    Every photo is checked before any model loads; a photo that cannot be read or located is
    reported (stderr, and its own --json line) and the exit code is 1. Settings or models that
    cannot work at all stop the command with exit code 2."""
    from agent.api import load_agent

    if mode is not None:
        check_mode(mode)
    if map_file is not None and map_file.suffix.lower() not in (".html", ".htm"):
        raise GeoAgentError(f"the map file {map_file} does not end in .html", "pass e.g. --map out.html")
    settings = settings_from(ctx, top_k=top_k, rag_samples=rag_samples)
    debug = bool(getattr(ctx.find_root().obj, "debug", False))
    checked: list[Photo | BaseException] = []
    for photo in photos:  # every input resolved and checked before any model loads
        try:
            checked.append(Photo.resolve(photo, settings.cache_dir, settings))
        except GeoAgentError as exc:
            if debug:
                raise
            checked.append(exc)
    outcomes: Iterator[Prediction | BaseException] | None = None
    done: list[Prediction] = []
    failed = 0
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="locate") if workers > 1 else None

    try:
        for i, (photo, item) in enumerate(zip(photos, checked, strict=True)):
            if isinstance(item, BaseException):
                failed += 1
                _report_failure(photo, item, as_json)
                continue
            if outcomes is None:
                try:
                    agent = load_agent(settings, mode=mode)
                    agent.check()
                except GeoAgentError as exc:  # nothing can be located: one line for each photo left, then exit 2
                    if as_json:
                        for rest in photos[i:]:
                            _emit_json(error_json(rest, exc))
                    raise
                good = [x for x in checked[i:] if isinstance(x, Photo)]
                attempt = partial(_attempt, agent)
                outcomes = pool.map(attempt, good) if pool is not None else map(attempt, good)  # in input order
            outcome = next(outcomes)
            if isinstance(outcome, BaseException):
                if debug:
                    raise outcome
                failed += 1
                _report_failure(photo, outcome, as_json)
                continue
            done.append(outcome)
            if as_json:
                _emit_json(prediction_json(outcome))
            else:
                usage = outcome.usage
                cost = settings.lmm_cost(usage.input_tokens, usage.output_tokens) if usage.calls else None
                exif = _exif_of(item, settings)
                typer.echo(format_text(outcome, alternatives, cost, exif, confidence_km=settings.confidence_km) + "\n")
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    if map_file is not None and done:
        from agent.mapview import write_map

        out = write_map(done, map_file)
        typer.echo(f"map written to {out}", err=True)
    total = Usage(**{k: sum(getattr(p.usage, k) for p in done) for k in ("calls", "input_tokens", "output_tokens", "seconds")})
    if total.calls and len(done) > 1:
        typer.echo(
            f"total over {len(done)} photos: {usage_text(total, settings.lmm_cost(total.input_tokens, total.output_tokens))}",
            err=True,
        )
    if failed:
        typer.echo(f"{failed} of {len(photos)} photos failed", err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("locate")(locate)
