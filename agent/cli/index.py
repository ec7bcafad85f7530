"""`geoagent index build` / `geoagent index info`: the image database and the GPS gallery."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from agent.cli.context import settings_from

index_app = typer.Typer(
    help="Build and inspect the retrieval collections (the GPS gallery and your image database).",
    no_args_is_help=True,
)


@index_app.command("build")
def build(
    ctx: typer.Context,
    csv_file: Annotated[
        Path,
        typer.Argument(
            help="CSV with one row per image: an id or path column and latitude/longitude columns (MP-16 and IM2GPS3k layouts work as they are)."
        ),
    ],
    images: Annotated[Path, typer.Option("--images", help="Folder the image ids/paths in the CSV are relative to.")],
    id_col: Annotated[
        str | None,
        typer.Option(
            "--id-col",
            help="Column with the image id (default: IMG_ID, id, ... ; also used as the file name when there is no path column).",
        ),
    ] = None,
    lat_col: Annotated[
        str | None, typer.Option("--lat-col", help="Latitude column in decimal degrees (default: LAT, lat or latitude).")
    ] = None,
    lon_col: Annotated[
        str | None, typer.Option("--lon-col", help="Longitude column in decimal degrees (default: LON, lon, lng or longitude).")
    ] = None,
    path_col: Annotated[
        str | None,
        typer.Option(
            "--path-col",
            help="Column with the image file path, relative to --images (default: path/file/filename if present, else the id).",
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", min=1, max=4096, help="Images encoded per batch (default: GEOAGENT_BATCH_SIZE, 32)."),
    ] = None,
    collection: Annotated[
        str | None,
        typer.Option("--collection", help="Collection to fill (default: GEOAGENT_DATABASE_COLLECTION, image_database)."),
    ] = None,
    encoder: Annotated[
        str | None,
        typer.Option(
            "--encoder",
            help="geoclip, or fusion:PATH (a checkpoint of geoagent train fusion; its own collections). Default GEOAGENT_ENCODER.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Embed the images of a CSV into the image database. Resumable: ids already stored are skipped;
    unreadable images are logged and counted, not fatal. Threads decode the next batch while one is
    encoded and upserts run in the background (GEOAGENT_INDEX_WORKERS, GEOAGENT_INDEX_UPSERTS); the
    collection is created int8-quantized with its originals on disk (GEOAGENT_DATABASE_QUANTIZATION...)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from retrieval_service.retrieval.ingest import ingest_csv, read_rows
    from retrieval_service.retrieval.retriever import Retriever

    settings = settings_from(ctx, encoder=encoder)
    frame, _ = read_rows(
        csv_file, id_col=id_col, lat_col=lat_col, lon_col=lon_col, path_col=path_col
    )  # fail fast, before models load
    retriever = Retriever.from_settings(settings)
    try:
        with Progress(
            TextColumn("indexing"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            transient=True,
            disable=as_json,
        ) as bar:
            task = bar.add_task("index", total=len(frame), rate="")

            def advance(rows: int) -> None:
                bar.advance(task, rows)
                speed = next(t.speed for t in bar.tasks if t.id == task)
                bar.update(task, rate=f"{speed:.1f} rows/s" if speed else "")

            report = ingest_csv(
                retriever,
                csv_file,
                images,
                collection=collection,
                batch_size=batch_size,
                id_col=id_col,
                lat_col=lat_col,
                lon_col=lon_col,
                path_col=path_col,
                progress=advance,
            )
    finally:
        retriever.close()
    if as_json:
        typer.echo(report.model_dump_json())
    else:
        typer.echo(
            f"{report.collection}: added {report.added}, already present {report.skipped_existing}, "
            f"unreadable {report.unreadable}, bad rows {report.bad_rows}, repeated ids {report.duplicates}; "
            f"{report.total_in_collection} images in the collection"
        )


@index_app.command("info")
def info(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Show the data dir, the vector store, each collection's size and the configured models."""
    from retrieval_service.retrieval.retriever import Retriever

    retriever = Retriever.from_settings(settings_from(ctx))
    try:
        data = retriever.info()
    finally:
        retriever.close()
    if as_json:
        typer.echo(json.dumps(data))
        return
    for line in info_lines(data):
        typer.echo(line)


def info_lines(data: dict) -> list[str]:
    """``index info`` in words: one account of the gallery (how it is searched and whether it is
    ready), then the image database; a collection that exact search does not need is not listed as
    "not built"."""
    gallery_name = next(iter(data["collections"]), "")
    database_name = list(data["collections"])[-1] if len(data["collections"]) > 1 else ""
    lines = [
        f"data dir:       {data['data_dir']}",
        "store:          " + ", ".join(f"{k} {v}" for k, v in data["store"].items()),
        f"image model:    {data['image_model']} / {data['image_pretrained']} on {data['device']} (encoder {data.get('encoder', 'geoclip')})",
    ]
    gallery = data["collections"].get(gallery_name)
    if data.get("gallery_search") == "exact":
        state = (
            "ready (its vectors are cached in the data dir)"
            if data["gallery_ready"]
            else "not encoded yet: the first photo encodes it once (a few minutes on a CPU), or run `geoagent locate` on any photo"
        )
        lines.append(f"gallery:        exact search over GeoCLIP's gallery (no collection needed): {state}")
    else:
        state = f"{gallery['points']} points, {gallery['dim']}-d" if gallery else "not built yet: the first photo builds it"
        ready = "ready" if data["gallery_ready"] else "not ready"
        lines.append(
            f"gallery:        {data.get('gallery_search', 'hnsw')} search in collection {gallery_name}: {state} ({ready})"
        )
    database = data["collections"].get(database_name)
    lines.append(
        f"image database: collection {database_name}: "
        + (
            f"{database['points']} photos, {database['dim']}-d"
            if database
            else "none yet (optional; `geoagent index build photos.csv --images DIR` adds your geotagged photos)"
        )
    )
    return lines


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(index_app, name="index")
