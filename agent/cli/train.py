"""`geoagent train precompute` / `geoagent train fusion`: the trained fusion retriever.

precompute: a CSV of images + coordinates -> frozen CLIP tokens, class maps (and text features) in
memory-mapped shards (resumable; split over processes with --shard I/N or torchrun); merge joins
folders written apart. fusion: trains the fusion model on them with checkpoints, exact resume, a
progress bar and validation, in one process or data-parallel under torchrun; the run folder's
fusion.pt is what ``GEOAGENT_ENCODER=fusion:RUN/fusion.pt`` and ``index build --encoder fusion:...`` use.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from agent.cli.context import settings_from
from agent.settings import Settings
from retrieval_service.fusion.settings import FusionSettings

train_app = typer.Typer(
    help="Train the fusion retriever (DualGeo image+segmentation fusion, TransGeoCLIP GPS encoder).", no_args_is_help=True
)


class TrainCliSettings(Settings, FusionSettings):
    """The agent's settings plus the fusion section (GEOAGENT_FUSION_*)."""


CLI_NAMES = {"use_segmentation": "segmentation", "use_text": "text"}
"""FusionConfig fields whose command-line option has another name."""


@train_app.command("precompute")
def precompute_cmd(
    ctx: typer.Context,
    csv_file: Annotated[
        Path,
        typer.Argument(
            help="CSV with one row per image (the index build conventions: IMG_ID/LAT/LON, id/lat/lon, a path column...)."
        ),
    ],
    images: Annotated[Path, typer.Option("--images", help="Folder the image ids/paths in the CSV are relative to.")],
    out: Annotated[Path, typer.Option("--out", help="Features folder to write (an interrupted run resumes into it).")],
    segmentation: Annotated[
        bool,
        typer.Option(
            "--segmentation/--no-segmentation",
            help="Compute class maps with the configured segmenter (GEOAGENT_SEGMENTER, GEOAGENT_SEGMENTER_MODEL).",
        ),
    ] = True,
    text: Annotated[
        bool,
        typer.Option("--text", help="Also encode 'A photo taken in {city}, {region}, {country}.' from the CSV's place columns."),
    ] = False,
    token_grid: Annotated[
        int | None,
        typer.Option("--token-grid", min=1, max=64, help="Patch tokens pooled to N x N (default GEOAGENT_FUSION_TOKEN_GRID, 4)."),
    ] = None,
    seg_grid: Annotated[
        int | None,
        typer.Option("--seg-grid", min=1, max=512, help="Class-map cells per side (default GEOAGENT_FUSION_SEG_GRID, 32)."),
    ] = None,
    shard_size: Annotated[int | None, typer.Option("--shard-size", min=16, help="Rows per shard (default 4096).")] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, max=4096, help="Images per CLIP batch (default GEOAGENT_BATCH_SIZE).")
    ] = None,
    id_col: Annotated[str | None, typer.Option("--id-col")] = None,
    lat_col: Annotated[str | None, typer.Option("--lat-col")] = None,
    lon_col: Annotated[str | None, typer.Option("--lon-col")] = None,
    path_col: Annotated[str | None, typer.Option("--path-col")] = None,
    author_col: Annotated[
        str | None, typer.Option("--author-col", help="Column naming the photographer (for --val-split author).")
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            help="I/N: this process computes every N-th feature shard from the I-th (0-based). "
            "Under torchrun: RANK/WORLD_SIZE. Default 0/1 (all of them).",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=0, help="DataLoader processes decoding photos (default GEOAGENT_FUSION_WORKERS, 4)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Precompute the frozen inputs of the fusion model once, so that an epoch costs only the trainable part.
    Split over GPUs or machines with --shard I/N (or torchrun); each process writes its own shards."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from retrieval_service.fusion.distributed import World, device_for
    from retrieval_service.fusion.precompute import parse_shard, precompute, rows_preview, shard_rows

    settings = settings_from(ctx, TrainCliSettings)
    world = World.from_env(os.environ)
    part = parse_shard(shard) if shard else (world.rank, world.size)
    cols = dict(id_col=id_col, lat_col=lat_col, lon_col=lon_col, path_col=path_col, author_col=author_col)
    size = shard_size or settings.fusion_shard_size
    total = shard_rows(len(rows_preview(csv_file, **cols)), size, part)  # fail fast on a bad CSV, before any model loads
    label = "precompute" if part[1] == 1 else f"precompute {part[0]}/{part[1]}"
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), disable=as_json) as bar:
        task = bar.add_task("precompute", total=total)
        report = precompute(
            csv_file,
            images,
            out,
            image_model=settings.image_model,
            image_pretrained=settings.image_pretrained,
            device=device_for(world, settings.device),
            batch_size=batch_size or settings.batch_size,
            token_grid=token_grid or settings.fusion_token_grid,
            seg_grid=seg_grid or settings.fusion_seg_grid,
            shard_size=size,
            segmenter_settings=settings if segmentation else None,
            text=text,
            workers=settings.fusion_workers if workers is None else workers,
            shard=part,
            progress=lambda n: bar.advance(task, n),
            **cols,
        )
    if as_json:
        typer.echo(report.model_dump_json())
    else:
        typer.echo(
            f"{report.out}: {report.rows} rows ({report.unreadable} unreadable images), "
            f"{report.shards_written} shards written, {report.shards_reused} reused"
            + (f"; {report.shards_missing} shards of other processes still missing" if report.shards_missing else "")
        )


@train_app.command("merge")
def merge_cmd(
    parts: Annotated[list[Path], typer.Argument(help="The --out folders of precompute processes run with --shard I/N.")],
    out: Annotated[Path, typer.Option("--out", help="The joined features folder (may be one of the parts).")],
    move: Annotated[bool, typer.Option("--move", help="Move the shards instead of copying them.")] = False,
) -> None:
    """Join features folders written apart by precompute processes (no shared disk) into one."""
    from retrieval_service.fusion.features import merge_features

    merged = merge_features(parts, out, move=move)
    missing = merged.missing_shards()
    typer.echo(
        f"{out}: {merged.shard_count - len(missing)} of {merged.shard_count} shards"
        + (f"; missing {', '.join(map(str, missing[:10]))}{'...' if len(missing) > 10 else ''}" if missing else ", complete")
    )


@train_app.command("fusion")
def fusion_cmd(
    ctx: typer.Context,
    features: Annotated[
        str,
        typer.Argument(
            help="Features folder written by geoagent train precompute, or its fsspec URL (s3://..., read through "
            "a local cache: GEOAGENT_FUSION_CACHE_DIR)."
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Run folder: fusion.pt, best.pt, state.pt (resume), train.csv, validation.csv.")
    ],
    # the model and its ablations
    dim: Annotated[int, typer.Option("--dim", min=8, help="Width of the fusion tokens.")] = 512,
    embed_dim: Annotated[int, typer.Option("--embed-dim", min=8, help="Width of the image/GPS space.")] = 512,
    heads: Annotated[int, typer.Option("--heads", min=1)] = 8,
    layers: Annotated[int, typer.Option("--layers", min=0, help="Bidirectional cross-attention layers.")] = 2,
    dropout: Annotated[float, typer.Option("--dropout", min=0.0, max=0.9)] = 0.1,
    segmentation: Annotated[
        bool, typer.Option("--segmentation/--no-segmentation", help="Ablation: drop the segmentation view.")
    ] = True,
    fusion: Annotated[
        str, typer.Option("--fusion", help="cross_attention, or concat (ablation: no attention).")
    ] = "cross_attention",
    seg_encoding: Annotated[str, typer.Option("--seg-encoding", help="embed (learned class vectors) or onehot.")] = "embed",
    gps_encoder: Annotated[
        str, typer.Option("--gps-encoder", help="rff (summed multi-scale RFF, GeoCLIP/G3) or location_attention (TransGeoCLIP).")
    ] = "rff",
    projection: Annotated[
        str, typer.Option("--projection", help="equal_earth (GeoCLIP) or mercator (G3/DualGeo).")
    ] = "equal_earth",
    gps_init: Annotated[
        str, typer.Option("--gps-init", help="random, or geoclip (start from GeoCLIP's location encoder; needs embed_dim 512).")
    ] = "random",
    rff_features: Annotated[
        int, typer.Option("--rff-features", min=1, help="Random Fourier features per GPS scale (GeoCLIP: 256).")
    ] = 256,
    gps_hidden: Annotated[int, typer.Option("--gps-hidden", min=8, help="Width of each GPS scale's MLP (GeoCLIP: 1024).")] = 1024,
    text: Annotated[bool, typer.Option("--text", help="Add the image<->text loss (needs precompute --text).")] = False,
    queue_size: Annotated[int, typer.Option("--queue-size", min=0, help="GeoCLIP's GPS queue of extra negatives (0 = off).")] = 0,
    database_vector: Annotated[str, typer.Option("--database-vector", help="fused+clip (DualGeo) or fused.")] = "fused+clip",
    # the optimisation
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Default GEOAGENT_FUSION_EPOCHS (10).")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", min=1)] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=2, help="Default GEOAGENT_FUSION_BATCH_SIZE (256).")
    ] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Default GEOAGENT_FUSION_LR (1e-4).")] = None,
    weight_decay: Annotated[float, typer.Option("--weight-decay", min=0.0)] = 0.01,
    warmup_steps: Annotated[int | None, typer.Option("--warmup-steps", min=0)] = None,
    grad_clip: Annotated[float, typer.Option("--grad-clip", min=0.0, help="0 = no clipping.")] = 1.0,
    amp: Annotated[bool, typer.Option("--amp/--no-amp", help="Mixed precision on CUDA.")] = True,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    checkpoint_every: Annotated[int | None, typer.Option("--checkpoint-every", min=1)] = None,
    log_every: Annotated[int, typer.Option("--log-every", min=1, help="Steps between rows of train.csv.")] = 50,
    val_split: Annotated[str, typer.Option("--val-split", help="id or author (all of an author's photos on one side).")] = "id",
    val_fraction: Annotated[float, typer.Option("--val-fraction", min=0.0, max=0.5)] = 0.01,
    val_gallery: Annotated[str | None, typer.Option("--val-gallery", help="geoclip (100K), train, or a CSV of LAT/LON.")] = None,
    val_every: Annotated[
        int | None, typer.Option("--val-every", min=1, help="Validate every N epochs (default GEOAGENT_FUSION_VAL_EVERY, 1).")
    ] = None,
    val_gallery_sample: Annotated[
        int | None,
        typer.Option(
            "--val-gallery-sample",
            min=0,
            help="Validate against a fixed sample of N gallery coordinates, the whole gallery at the end "
            "(default GEOAGENT_FUSION_VAL_GALLERY_SAMPLE, 10000; 0 = always the whole gallery).",
        ),
    ] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Start over even if --out holds a training state.")] = False,
    preset_name: Annotated[
        str | None,
        typer.Option(
            "--preset",
            help="A published configuration: dualgeo or transgeoclip (its values; options given here still win; "
            "the table of values and sources is in docs/deployment.md).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Train the fusion model (AdamW, warm-up + cosine, clipping, AMP). Started again on the same --out
    it resumes exactly where the last checkpoint left off. Under torchrun (several GPUs or machines)
    it trains data-parallel: --batch-size is the global batch, split over the processes."""
    from retrieval_service.fusion.config import FusionConfig, TrainConfig
    from retrieval_service.fusion.distributed import World, close
    from retrieval_service.fusion.features import FeatureSet
    from retrieval_service.fusion.presets import preset
    from retrieval_service.fusion.trainer import FusionTrainer

    s = settings_from(ctx, TrainCliSettings)
    chosen = preset(preset_name)
    given = {name for name in ctx.params if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"}
    try:
        model_values = dict(
            dim=dim,
            embed_dim=embed_dim,
            heads=heads,
            layers=layers,
            dropout=dropout,
            use_segmentation=segmentation,
            fusion=fusion,
            seg_encoding=seg_encoding,
            gps_encoder=gps_encoder,
            projection=projection,
            gps_init=gps_init,
            rff_features=rff_features,
            gps_hidden=gps_hidden,
            use_text=text,
            queue_size=queue_size,
            database_vector=database_vector,
            seed=seed,
        )
        train_values = dict(
            epochs=epochs or s.fusion_epochs,
            max_steps=max_steps,
            batch_size=batch_size or s.fusion_batch_size,
            lr=lr or s.fusion_lr,
            weight_decay=weight_decay,
            warmup_steps=s.fusion_warmup_steps if warmup_steps is None else warmup_steps,
            grad_clip=grad_clip or None,
            amp=amp,
            seed=seed,
            checkpoint_every=checkpoint_every or s.fusion_checkpoint_every,
            log_every=log_every,
            val_split=val_split,
            val_fraction=val_fraction,
            val_gallery=val_gallery or s.fusion_val_gallery,
            val_every=val_every or s.fusion_val_every,
            val_gallery_sample=s.fusion_val_gallery_sample if val_gallery_sample is None else val_gallery_sample,
            workers=s.fusion_workers,
        )
        if chosen is not None:  # the preset's values, except those given on the command line
            model_values |= {k: v for k, v in chosen.model_values().items() if CLI_NAMES.get(k, k) not in given}
            train_values |= {k: v for k, v in chosen.train_values().items() if CLI_NAMES.get(k, k) not in given}
        config = FusionConfig(**model_values)  # type: ignore[arg-type]
        train = TrainConfig(**train_values)  # type: ignore[arg-type]
    except ValueError as exc:
        from retrieval_service.core.errors import ConfigError

        raise ConfigError(f"invalid training options: {exc}", "see geoagent train fusion --help") from exc
    world = World.from_env(os.environ)  # torchrun's RANK / WORLD_SIZE / LOCAL_RANK
    try:
        feature_set = FeatureSet(features, cache_dir=s.features_cache)
        _train(FusionTrainer(feature_set, out, config, train, device=s.device, resume=not fresh, world=world), as_json)
    finally:
        close(world)


def _train(trainer, as_json: bool) -> None:
    """Run ``trainer`` with a progress bar (rank 0 prints; the other ranks are silent)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    quiet = as_json or not trainer.world.main
    columns = (
        TextColumn("epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  {task.fields[rate]:.0f} samples/s"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, disable=quiet) as bar:
        task = bar.add_task(
            "train", total=int(trainer.total_steps), completed=trainer.step, epoch=trainer.epoch + 1, loss=float("nan"), rate=0.0
        )

        def on_event(event: dict) -> None:
            if event["kind"] == "step":
                bar.update(
                    task, completed=event["step"], epoch=event["epoch"] + 1, loss=event["loss"], rate=event["samples_per_s"]
                )
            elif event["kind"] == "validation" and not quiet:
                accs = "  ".join(f"{k.removeprefix('acc_')} {v:.3f}" for k, v in event.items() if k.startswith("acc_"))
                bar.console.print(
                    f"epoch {event['epoch']} step {event['step']}: top-1 within {accs} "
                    f"({event['gallery']} gallery points); median {event['median_km']:.0f} km"
                )

        result = trainer.run(on_event)
    if not trainer.world.main:
        return
    if as_json:
        typer.echo(result.model_dump_json())
    else:
        typer.echo(
            f"{result.steps} steps ({result.epochs_completed} epochs, resumed from step {result.resumed_from_step}); "
            f"{result.samples_per_s:.0f} samples/s; model: {result.model_path}"
        )
        typer.echo(
            f"use it: GEOAGENT_ENCODER=fusion:{result.model_path} (or geoagent index build ... --encoder fusion:{result.model_path})"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")
