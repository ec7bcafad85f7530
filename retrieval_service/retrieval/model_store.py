"""Weights fetched at run time, kept under ``<data_dir>/models`` so that they can be fetched ahead
(``geoagent models download``) and carried to an air-gapped machine (``models export`` /
``models import``).

``manifest.json`` lists each file: the model and pretrained tag it belongs to, its size and sha256,
where it came from, and how open_clip must build the model for it (QuickGELU for OpenAI weights,
the preprocessing constants). ``ImageEncoder`` looks here before the Hugging Face cache or the hub.
Everything shipped inside the package (the GeoCLIP heads and gallery in the ``geoclip`` wheel, the
Cityscapes segmenter) needs no download and is listed by ``inventory`` for completeness.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from retrieval_service.core.errors import ConfigError, WeightsNotFoundError

logger = logging.getLogger(__name__)

MODELS_DIR = "models"
MANIFEST = "manifest.json"
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


class ModelFile(BaseModel):
    """One stored weights file."""

    model: str = Field(description="open_clip model name, e.g. ViT-L-14")
    pretrained: str = Field(description="open_clip pretrained tag, e.g. openai")
    file: str = Field(description="path relative to the models folder")
    bytes: int
    sha256: str
    source: str = ""
    quick_gelu: bool = False
    preprocess: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.model}/{self.pretrained}"


def models_dir(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir).expanduser() / MODELS_DIR


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(folder: Path) -> list[ModelFile]:
    path = folder / MANIFEST
    if not path.is_file():
        return []
    try:
        return [ModelFile.model_validate(row) for row in json.loads(path.read_text(encoding="utf-8"))]
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is unreadable: {exc}", f"delete {path} and run `geoagent models download` again") from exc


def write_manifest(folder: Path, entries: list[ModelFile]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps([e.model_dump() for e in sorted(entries, key=lambda e: e.key)], indent=2), encoding="utf-8")
    os.replace(tmp, folder / MANIFEST)


def find_weights(folder: Path, model: str, pretrained: str) -> tuple[Path, ModelFile] | None:
    """The stored file for ``model``/``pretrained``, or None."""
    for entry in read_manifest(folder):
        if entry.model == model and entry.pretrained == pretrained and (folder / entry.file).is_file():
            return folder / entry.file, entry
    return None


def entry_for_file(folder: Path, path: Path) -> ModelFile | None:
    """The manifest entry of a stored file given by path (a checkpoint set in GEOAGENT_IMAGE_PRETRAINED)."""
    try:
        resolved = path.resolve()
    except OSError:
        return None
    for entry in read_manifest(folder):
        if (folder / entry.file).resolve() == resolved:
            return entry
    return None


def _open_clip_cfg(model: str, pretrained: str) -> dict[str, Any]:
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model, pretrained)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(model)
        raise WeightsNotFoundError(
            f"open_clip has no pretrained weights {pretrained!r} for {model}",
            f"use one of {tags or ['(none)']} (GEOAGENT_IMAGE_PRETRAINED)",
        )
    return dict(cfg)


HUB_LOGGER = "huggingface_hub"
UNREACHABLE = ("ConnectError", "ConnectionError", "ConnectTimeout", "OfflineModeIsEnabled", "LocalEntryNotFoundError", "Timeout")
"""Exception type names that mean the hub cannot be reached at all (rather than: no such file)."""


@contextmanager
def quiet_hub_logs() -> Iterator[None]:
    """The hub client's own log lines held back while it downloads: it logs every retry, and
    through its own handler and the root logger both (each line twice); geoagent logs one line
    when the hub cannot be reached instead, and the error names every file it tried."""
    hub = logging.getLogger(HUB_LOGGER)
    level = hub.level
    hub.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hub.setLevel(level)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the hub cannot be reached."""
    while exc is not None:
        if type(exc).__name__ in UNREACHABLE:
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def copy_with_progress(source: Path, target: Path, what: str) -> str:
    """Copy ``source`` to ``target`` atomically (a temp file, then a rename) behind a progress bar,
    hashing it on the way; returns its sha256."""
    from tqdm import tqdm

    digest = hashlib.sha256()
    tmp = target.with_name(f".{target.name}.tmp")
    size = source.stat().st_size
    with (
        open(source, "rb") as src,
        open(tmp, "wb") as dst,
        tqdm(total=size, desc=what, unit="B", unit_scale=True, disable=None, leave=False) as bar,
    ):
        for block in iter(lambda: src.read(1 << 22), b""):
            digest.update(block)
            dst.write(block)
            bar.update(len(block))
    os.replace(tmp, target)
    return digest.hexdigest()


def download_clip(
    data_dir: str | os.PathLike, model: str, pretrained: str, downloader: Callable[..., str] | None = None
) -> ModelFile:
    """Fetch the open_clip weights of ``model`` (an open_clip model name, see
    ``image_encoder.resolve_model_name``)/``pretrained`` from the hub into the models folder."""
    cfg = _open_clip_cfg(model, pretrained)
    repo = (cfg.get("hf_hub") or "").rstrip("/")
    if not repo:
        raise WeightsNotFoundError(
            f"{model}/{pretrained} is not published on the Hugging Face hub (URL: {cfg.get('url')})",
            "download the checkpoint yourself and set GEOAGENT_IMAGE_PRETRAINED=/path/to/it",
        )
    if downloader is None:
        from huggingface_hub import hf_hub_download as downloader  # type: ignore[no-redef]
    folder = models_dir(data_dir)
    target_dir = folder / "clip" / f"{model}__{pretrained}"
    target_dir.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    fetched: Path | None = None
    with quiet_hub_logs():
        for filename in WEIGHT_FILES:
            try:
                fetched = Path(downloader(repo_id=repo, filename=filename))
                break
            except Exception as exc:  # the hub client raises many types (offline, 404, auth)
                errors.append(f"{filename}: {type(exc).__name__}: {exc}")
                if unreachable(exc):  # one line, and no second file to wait through the same retries for
                    logger.warning("the model hub cannot be reached for %s/%s: %s", model, pretrained, _first_line(exc))
                    break
                logger.info("%s is not on the hub as %s: %s", repo, filename, _first_line(exc))
    if fetched is None:
        raise WeightsNotFoundError(
            f"could not download {model}/{pretrained} from {repo}: {'; '.join(errors)}",
            "run this on a machine with internet access, then `geoagent models export FILE` and "
            "`geoagent models import FILE` here",
        )
    target = target_dir / filename
    digest = copy_with_progress(fetched, target, f"storing {model}/{pretrained}")
    preprocess = {k: cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if cfg.get(k) is not None}
    entry = ModelFile(
        model=model,
        pretrained=pretrained,
        file=str(target.relative_to(folder)),
        bytes=target.stat().st_size,
        sha256=digest,
        source=f"hf://{repo}/{filename}",
        quick_gelu=bool(cfg.get("quick_gelu", False)),
        preprocess=preprocess,
    )
    write_manifest(folder, [e for e in read_manifest(folder) if e.key != entry.key] + [entry])
    logger.info("stored %s (%d bytes)", target, entry.bytes)
    return entry


def export_models(data_dir: str | os.PathLike, archive: str | os.PathLike) -> list[ModelFile]:
    """Write the models folder (manifest + files) into one tar file."""
    folder = models_dir(data_dir)
    entries = [e for e in read_manifest(folder) if (folder / e.file).is_file()]
    if not entries:
        raise WeightsNotFoundError(f"no downloaded weights in {folder}", "run `geoagent models download` first")
    out = Path(archive).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with tarfile.open(tmp, "w") as tar:
        tar.add(folder / MANIFEST, arcname=MANIFEST)
        for entry in entries:
            tar.add(folder / entry.file, arcname=entry.file)
    os.replace(tmp, out)
    return entries


def import_models(data_dir: str | os.PathLike, archive: str | os.PathLike) -> list[ModelFile]:
    """Unpack an export into the models folder, checking every file's size and sha256 first."""
    src = Path(archive).expanduser()
    if not src.is_file():
        raise ConfigError(f"model archive not found: {src}", "pass the file written by `geoagent models export`")
    folder = models_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".import-") as scratch:
        try:
            with tarfile.open(src, "r") as tar:
                tar.extractall(scratch, filter="data")  # no absolute paths, links out or devices
        except (tarfile.TarError, OSError) as exc:
            raise ConfigError(
                f"{src} is not a readable model archive: {exc}", "pass the file written by `geoagent models export`"
            ) from exc
        incoming = read_manifest(Path(scratch))
        if not incoming:
            raise ConfigError(f"{src} holds no {MANIFEST}", "pass the file written by `geoagent models export`")
        for entry in incoming:
            path = Path(scratch) / entry.file
            if not path.is_file() or path.stat().st_size != entry.bytes or sha256_file(path) != entry.sha256:
                raise ConfigError(
                    f"{entry.file} in {src} is missing or damaged (size or sha256 differs from the manifest)",
                    "export the models again and copy the archive completely",
                )
        for entry in incoming:
            target = folder / entry.file
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(Path(scratch) / entry.file, target)
        keys = {e.key for e in incoming}
        write_manifest(folder, [e for e in read_manifest(folder) if e.key not in keys] + incoming)
    return incoming


def inventory(data_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every model file geoagent uses that is on this machine: downloaded weights and shipped files."""
    rows = [
        {
            "name": e.key,
            "kind": "clip weights (downloaded)",
            "path": str(models_dir(data_dir) / e.file),
            "bytes": e.bytes,
            "sha256": e.sha256,
        }
        for e in read_manifest(models_dir(data_dir))
    ]
    from retrieval_service.evidence.segmentation import SHIPPED_TFLITE

    shipped = [("cityscapes-deeplab", "segmenter (shipped)", SHIPPED_TFLITE)]
    try:
        import geoclip

        base = Path(geoclip.__file__).parent / "model" / "weights"
        shipped += [
            (f"geoclip/{p.name}", "GeoCLIP heads/gallery (geoclip wheel)", p) for p in sorted(base.glob("*")) if p.is_file()
        ]
    except ImportError:
        pass
    for name, kind, path in shipped:
        if path.is_file():
            rows.append(
                {"name": name, "kind": kind, "path": str(path), "bytes": path.stat().st_size, "sha256": sha256_file(path)}
            )
    return rows
