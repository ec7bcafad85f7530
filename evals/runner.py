"""The resumable evaluation runner: one durable JSONL row per image.

The predictor is anything with ``.invoke({"image": path}) -> Prediction`` built by a factory
``factory(settings, mode=mode)``; the default factory is ``agent.load_agent``. Predictions run in a
thread pool (``workers``); the calling thread alone scores and writes rows, so the file has one writer,
and a lock on the run directory keeps a second process out. Every row carries the settings
fingerprint of config.json; label rows that cannot be evaluated become failed rows with the reason.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from filelock import FileLock, Timeout
from pydantic import BaseModel
from tqdm import tqdm

from agent.modes import available_modes, check_mode
from agent.settings import Settings
from evals.datasets import Dataset, EvalItem, InvalidRow
from evals.metrics import DISTANCE_METHOD, THRESHOLDS_KM, distance_km, hits
from evals.records import PREDICTIONS_FILE, RowWriter, read_rows, repair, rewrite
from evals.run_info import build_config, check_resumable, write_config
from evals.usage import row_usage
from retrieval_service.core.errors import ConfigError
from retrieval_service.core.geo import country_code, country_codes

log = logging.getLogger(__name__)

TOP_K_KEPT = 10
LOCK_FILE = ".run.lock"


class Predictor(Protocol):
    def invoke(self, input: dict[str, Any], config: dict | None = None) -> Any: ...


PredictorFactory = Callable[..., Predictor]


def default_factory(settings: Settings, *, mode: str) -> Predictor:
    """The real agent in the requested mode."""
    from agent import load_agent

    return load_agent(settings, mode=mode)


def import_factory(spec: str) -> PredictorFactory:
    """Resolve 'package.module:callable' to a predictor factory."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"bad predictor spec {spec!r}", "write it as package.module:factory_function")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"cannot import predictor factory {spec!r}: {exc}", "check the module path and the function name"
        ) from exc
    if not callable(factory):
        raise ConfigError(f"predictor factory {spec!r} is not callable", "point at a function(settings, mode=...)")
    return factory


class RunResult(BaseModel):
    """What one invocation of the runner did."""

    run_dir: Path
    total: int
    resumed: int
    written: int
    failed: int
    missing: int
    invalid: int = 0
    elapsed_s: float
    harness_s: float
    predictor_s: float


def _jsonable(value: Any) -> Any:
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def build_row(
    item: EvalItem, prediction: Any, error: BaseException | None, latency_ms: float, country_gt: str | None, mode: str
) -> dict[str, Any]:
    """Score one prediction (or failure) against its ground truth as a JSONL row."""
    row: dict[str, Any] = {
        "id": item.id,
        "image": str(item.image),
        "gt": {"lat": item.lat, "lon": item.lon},
        "mode": mode,
        "latency_ms": round(latency_ms, 3),
        "distance_method": DISTANCE_METHOD,
        "country_gt": country_gt,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if error is not None or prediction is None:
        row.update(
            pred=None,
            top_k=[],
            distance_km=None,
            hits=hits(None),
            country_pred=None,
            country_match=False,
            confidence=None,
            source=None,
            place=None,
            rationale="",
            trace=[],
            messages=[],
            warnings=[],
            usage=row_usage(None),
            error=f"{type(error).__name__}: {error}" if error is not None else "predictor returned nothing",
            error_type=type(error).__name__ if error is not None else None,
        )
        return row
    d = distance_km(item.lat, item.lon, prediction.lat, prediction.lon)
    cc_pred = country_code(prediction.lat, prediction.lon)
    alternatives = list(getattr(prediction, "alternatives", []) or []) or list(getattr(prediction, "candidates", []) or [])
    row.update(
        pred={"lat": prediction.lat, "lon": prediction.lon},
        top_k=[_jsonable(c) for c in alternatives[:TOP_K_KEPT]],
        distance_km=d,
        hits=hits(d),
        country_pred=cc_pred,
        country_match=bool(country_gt) and cc_pred == country_gt,
        confidence=getattr(prediction, "confidence", None),
        probabilities=dict(getattr(prediction, "probabilities", {}) or {}),
        raw_probabilities=dict(getattr(prediction, "raw_probabilities", {}) or {}),
        search_area_km2=dict(getattr(prediction, "search_area_km2", {}) or {}),
        calibrated=bool(getattr(prediction, "calibrated", False)),
        source=getattr(prediction, "source", None),
        place=_jsonable(getattr(prediction, "place", None)),
        rationale=getattr(prediction, "rationale", ""),
        evidence=[_jsonable(e) for e in getattr(prediction, "evidence", [])],
        trace=[_jsonable(t) for t in getattr(prediction, "trace", [])],
        messages=[_jsonable(m) for m in getattr(prediction, "messages", [])],
        warnings=list(getattr(prediction, "warnings", [])),
        usage=row_usage(prediction),
        error=None,
        error_type=None,
    )
    return row


def invalid_row(bad: InvalidRow, mode: str, fingerprint: str) -> dict[str, Any]:
    """The failed row of a label row that cannot be evaluated (no ground truth, no prediction)."""
    return {
        "id": bad.id,
        "image": None,
        "gt": None,
        "mode": mode,
        "latency_ms": 0.0,
        "distance_method": DISTANCE_METHOD,
        "country_gt": None,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "pred": None,
        "top_k": [],
        "distance_km": None,
        "hits": hits(None),
        "country_pred": None,
        "country_match": False,
        "confidence": None,
        "source": None,
        "place": None,
        "rationale": "",
        "trace": [],
        "messages": [],
        "warnings": [],
        "error": f"line {bad.line} of the labels: {bad.reason}",
        "error_type": "LabelError",
        "fingerprint": fingerprint,
    }


def run_lock(run_dir: Path) -> FileLock:
    """Hold the run directory for this process: a second ``eval run`` on it is refused (ConfigError)."""
    lock = FileLock(str(run_dir / LOCK_FILE), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise ConfigError(
            f"another `geoagent eval run` is writing to {run_dir}",
            "wait for it to finish (it resumes where it stops), or pass another --out directory",
        ) from None
    return lock


def _predict(predictor: Predictor, item: EvalItem) -> tuple[Any, BaseException | None, float]:
    start = time.perf_counter()
    try:
        prediction = predictor.invoke({"image": str(item.image)})
        error = None
    except Exception as exc:  # a failed image is a row with an error; the run goes on
        prediction, error = None, exc
    return prediction, error, (time.perf_counter() - start) * 1000.0


def run_eval(
    dataset: Dataset,
    run_dir: str | Path,
    *,
    settings: Settings,
    mode: str,
    factory: PredictorFactory = default_factory,
    predictor_name: str | None = None,
    limit: int | None = None,
    workers: int = 1,
    retry_failed: bool = False,
    progress: bool = True,
    argv: list[str] | None = None,
    report: bool = True,
) -> RunResult:
    """Evaluate ``dataset`` into ``run_dir``, skipping ids already there (resume)."""
    check_mode(mode)
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}", "pass --workers 1 or more")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {limit}", "pass a positive --limit or leave it out")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_lock(run_dir)
    try:
        return _run_locked(
            dataset,
            run_dir,
            settings=settings,
            mode=mode,
            factory=factory,
            predictor_name=predictor_name,
            limit=limit,
            workers=workers,
            retry_failed=retry_failed,
            progress=progress,
            argv=argv,
            report=report,
        )
    finally:
        lock.release()


def _run_locked(
    dataset: Dataset,
    run_dir: Path,
    *,
    settings: Settings,
    mode: str,
    factory: PredictorFactory,
    predictor_name: str | None,
    limit: int | None,
    workers: int,
    retry_failed: bool,
    progress: bool,
    argv: list[str] | None,
    report: bool,
) -> RunResult:
    items = dataset.items[:limit] if limit else list(dataset.items)
    config = build_config(
        settings,
        mode=mode,
        argv=argv,
        predictor=predictor_name,
        dataset={
            "name": dataset.name,
            "labels": str(dataset.labels),
            "images": str(dataset.images),
            "columns": dataset.columns,
            "rows_with_images": len(dataset.items),
            "limit": limit,
            "evaluated": len(items),
            "missing_images": len(dataset.missing),
            "missing_ids": dataset.missing,
            "invalid_rows": [bad.model_dump() for bad in dataset.invalid],
        },
    )
    digest = config["fingerprint"]["digest"]
    check_resumable(run_dir, config)
    write_config(run_dir, config)

    path = run_dir / PREDICTIONS_FILE
    repair(path)
    done_rows = read_rows(path)
    wanted = {it.id for it in items}
    if retry_failed and any(r.get("error") for r in done_rows):
        done_rows = [r for r in done_rows if not r.get("error")]
        rewrite(path, done_rows)
    elif path.exists() and len(done_rows) != sum(1 for line in path.read_bytes().splitlines() if line.strip()):
        rewrite(path, done_rows)  # duplicates found: store each id once
    done = {r["id"] for r in done_rows}
    invalid = [bad for bad in dataset.invalid if bad.id not in done]
    if invalid:
        with RowWriter(path) as writer:
            for bad in invalid:
                writer.write(invalid_row(bad, mode, digest))
        done_rows += [{"id": bad.id, "error": bad.reason} for bad in invalid]
        done |= {bad.id for bad in invalid}
    pending = [it for it in items if it.id not in done]
    resumed = sum(1 for r in done_rows if r["id"] in wanted)
    log.info("%s: %d done already, %d to go", run_dir, resumed, len(pending))

    hit25 = sum(1 for r in done_rows if r["id"] in wanted and r.get("hits", {}).get("25"))
    hit2500 = sum(1 for r in done_rows if r["id"] in wanted and r.get("hits", {}).get("2500"))
    failed = 0
    written = 0
    harness_s = 0.0
    predictor_s = 0.0
    start = time.perf_counter()
    if pending:
        gt_countries = dict(zip((it.id for it in pending), country_codes([(it.lat, it.lon) for it in pending]), strict=False))
        predictor = factory(settings, mode=mode)
        check = getattr(predictor, "check", None)
        if callable(check):  # a predictor that cannot work at all stops here, not as N failed rows
            check()
        bar = tqdm(
            total=len(items),
            initial=resumed,
            desc=f"eval {dataset.name}/{mode}",
            unit="img",
            disable=not progress,
            dynamic_ncols=True,
        )
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="eval")
        try:
            with RowWriter(path) as writer:
                # the first image runs alone so that lazily loaded models and stores start in one thread
                first = Future()
                first.set_result(_predict(predictor, pending[0]))
                futures: dict[Future, EvalItem] = {first: pending[0]}
                futures.update({pool.submit(_predict, predictor, it): it for it in pending[1:]})
                for fut in as_completed(futures):
                    item = futures[fut]
                    prediction, error, latency_ms = fut.result()
                    t0 = time.perf_counter()
                    row = build_row(item, prediction, error, latency_ms, gt_countries[item.id], mode)
                    row["fingerprint"] = digest
                    writer.write(row)
                    harness_s += time.perf_counter() - t0
                    predictor_s += latency_ms / 1000.0
                    written += 1
                    failed += row["error"] is not None
                    hit25 += row["hits"]["25"]
                    hit2500 += row["hits"]["2500"]
                    n_done = resumed + written
                    bar.update(1)
                    bar.set_postfix_str(
                        f"acc@25km {hit25 / n_done:.1%} acc@2500km {hit2500 / n_done:.1%} failed {failed}", refresh=False
                    )
                    if error is not None:
                        log.warning("%s failed: %s", item.id, row["error"])
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            bar.close()
    result = RunResult(
        run_dir=run_dir,
        total=len(items),
        resumed=resumed,
        written=written,
        failed=failed,
        missing=len(dataset.missing),
        invalid=len(dataset.invalid),
        elapsed_s=time.perf_counter() - start,
        harness_s=harness_s,
        predictor_s=predictor_s,
    )
    if report:
        from evals.report import write_reports

        write_reports(run_dir)
    return result


__all__ = [
    "THRESHOLDS_KM",
    "Predictor",
    "PredictorFactory",
    "RunResult",
    "available_modes",
    "build_row",
    "default_factory",
    "import_factory",
    "run_eval",
]
