"""`geoagent calibrate RUN_DIR...`: fit the confidence calibration on labelled eval runs."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from agent.cli.context import settings_from
from retrieval_service.core.errors import DatasetError

logger = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.jsonl"
CONFIG_FILE = "config.json"


def read_run(run_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows (a torn or malformed line is skipped with a warning) and config of an eval run."""
    path = run_dir / PREDICTIONS_FILE
    if not path.is_file():
        raise DatasetError(f"{run_dir} holds no {PREDICTIONS_FILE}", "pass the --out directory of a `geoagent eval run`")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError:
            logger.warning("%s: line %d is not JSON; skipped", path, number)
    config_path = run_dir / CONFIG_FILE
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    return rows, config


def register(app: typer.Typer) -> None:
    @app.command("calibrate")
    def calibrate(
        ctx: typer.Context,
        run_dirs: Annotated[
            list[Path],
            typer.Argument(
                metavar="RUN_DIR",
                help="Eval run directories (`geoagent eval run --out DIR`) on LABELLED photos "
                "that are not the benchmark you report: a held-out slice of your own "
                "database, or YFCC26k.",
            ),
        ],
        as_json: Annotated[bool, typer.Option("--json", help="Print what was saved as JSON.")] = False,
    ) -> None:
        """Fit one isotonic map per error threshold (1, 25, 200, 750, 2500 km) from the runs' predicted
        P(error <= t) to the observed hit rates, and save it under the data dir for the mode and the
        settings fingerprint (image model and weights, gallery search, top_k, LMM) the runs used.
        Later Predictions with the same mode and settings report calibrated probabilities and
        ``calibrated: true``; confidence is the calibrated P(error <= GEOAGENT_CONFIDENCE_KM)."""
        from agent.decision.calibration import MIN_ROWS, fit, save, settings_fingerprint

        settings = settings_from(ctx)
        groups: dict[tuple[str, str], tuple[list[dict[str, float]], list[float | None]]] = {}
        for run_dir in run_dirs:
            rows, config = read_run(run_dir)
            fingerprint = settings_fingerprint(config.get("settings") or settings)
            for row in rows:
                raw = row.get("raw_probabilities")
                if row.get("error") or not raw:
                    continue
                mode = str(row.get("mode") or config.get("mode") or "policy")
                predicted, errors = groups.setdefault((mode, fingerprint), ([], []))
                predicted.append(raw)
                errors.append(row.get("distance_km"))
        if not groups:
            raise DatasetError(
                "the runs hold no rows with probabilities",
                "re-run `geoagent eval run` with this version (rows need raw_probabilities and distance_km)",
            )
        saved = []
        for (mode, fingerprint), (predicted, errors) in groups.items():
            if len(predicted) < MIN_ROWS:
                raise DatasetError(
                    f"only {len(predicted)} usable rows for mode {mode}; a calibration needs at least {MIN_ROWS}",
                    "evaluate more labelled photos (a few hundred is better)",
                )
            path = save(fit(predicted, errors, mode, fingerprint), settings.data_dir)
            saved.append({"mode": mode, "fingerprint": fingerprint, "rows": len(predicted), "path": str(path)})
        if as_json:
            typer.echo(json.dumps(saved, indent=2))
        else:
            for item in saved:
                typer.echo(f"calibrated {item['mode']} on {item['rows']} rows -> {item['path']}")
