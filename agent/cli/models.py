"""`geoagent models list/download/export/import`: the weights fetched at run time, ahead of time and
for air-gapped machines (stored under <data dir>/models, with sizes and sha256 digests)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from agent.cli.context import settings_from

models_app = typer.Typer(
    help="Model weights: list what is on this machine, download the CLIP weights ahead of use, and carry "
    "them to an offline machine (export on a connected one, import on the offline one).",
    no_args_is_help=True,
)


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


@models_app.command("list")
def list_models(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """The model files on this machine (downloaded CLIP weights, the shipped segmenter, the GeoCLIP
    files of the geoclip wheel) with sizes and sha256 digests."""
    from retrieval_service.retrieval.image_encoder import resolve_model_name
    from retrieval_service.retrieval.model_store import find_weights, inventory, models_dir

    settings = settings_from(ctx)
    rows = inventory(settings.data_dir)
    name = resolve_model_name(settings.image_model)
    configured = f"{name}/{settings.image_pretrained}"
    ready = (
        settings.image_pretrained.lower() == "none"
        or Path(settings.image_pretrained).expanduser().is_file()
        or find_weights(models_dir(settings.data_dir), name, settings.image_pretrained) is not None
    )
    if as_json:
        typer.echo(json.dumps({"configured": configured, "configured_stored": ready, "files": rows}, indent=2))
        return
    for row in rows:
        typer.echo(f"{row['name']:<48} {_size(row['bytes']):>11}  {row['sha256'][:16]}  {row['kind']}  {row['path']}")
    note = "stored" if ready else "not stored here (run `geoagent models download`; the Hugging Face cache is also used)"
    typer.echo(f"configured CLIP weights: {configured}: {note}")


@models_app.command("download")
def download(
    ctx: typer.Context,
    model: Annotated[
        str | None, typer.Option("--model", metavar="NAME", help="open_clip model name (default: GEOAGENT_IMAGE_MODEL).")
    ] = None,
    pretrained: Annotated[
        str | None,
        typer.Option("--pretrained", metavar="TAG", help="open_clip pretrained tag (default: GEOAGENT_IMAGE_PRETRAINED)."),
    ] = None,
) -> None:
    """Download the CLIP weights that `locate` needs into the data dir (needs the model hub)."""
    from retrieval_service.retrieval.image_encoder import resolve_model_name
    from retrieval_service.retrieval.model_store import download_clip

    settings = settings_from(ctx)
    name = resolve_model_name(model or settings.image_model)  # a config JSON path registers and becomes its name
    entry = download_clip(settings.data_dir, name, pretrained or settings.image_pretrained)
    typer.echo(f"{entry.key}: {entry.file} ({_size(entry.bytes)}, sha256 {entry.sha256}, QuickGELU {entry.quick_gelu})")


@models_app.command("export")
def export(
    ctx: typer.Context, archive: Annotated[Path, typer.Argument(help="The .tar file to write.", metavar="ARCHIVE")]
) -> None:
    """Write the downloaded weights (and their manifest) into one file to copy to another machine."""
    from retrieval_service.retrieval.model_store import export_models

    entries = export_models(settings_from(ctx).data_dir, archive)
    typer.echo(f"wrote {archive}: {', '.join(e.key for e in entries)}")


@models_app.command("import")
def import_(
    ctx: typer.Context,
    archive: Annotated[Path, typer.Argument(help="A file written by `geoagent models export`.", metavar="ARCHIVE")],
) -> None:
    """Unpack exported weights into this machine's data dir (every file's size and sha256 checked)."""
    from retrieval_service.retrieval.model_store import import_models

    entries = import_models(settings_from(ctx).data_dir, archive)
    typer.echo(f"imported {', '.join(e.key for e in entries)}")


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
