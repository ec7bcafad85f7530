"""What a run directory records about itself: config.json (settings with secrets redacted, mode,
dataset, argv), the versions of the software that produced it, and what the reports must say so
they cannot mislead: which image model and weights made the predictions (loudly when they are
random or untrained) and which split of the benchmark was run, with its size."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from agent.settings import Settings
from retrieval_service.core.errors import ConfigError

CONFIG_FILE = "config.json"
SECRET_MARKERS = ("key", "token", "secret", "password")
REPO_ROOT = Path(__file__).resolve().parents[1]


def redacted_settings(settings: Settings) -> dict[str, Any]:
    """Settings as JSON-able values, with every secret-looking field replaced by '***'."""
    values = settings.model_dump(mode="json")
    return {k: ("***" if v is not None and any(m in k.lower() for m in SECRET_MARKERS) else v) for k, v in values.items()}


def _pkg(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def git_commit(root: Path = REPO_ROOT) -> str | None:
    """The checkout's HEAD commit (with '+dirty' when there are local changes), or None."""
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain"], capture_output=True, text=True, timeout=5)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, str | None]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "geoagent": _pkg("geoagent"),
        "torch": _pkg("torch"),
        "open_clip": _pkg("open_clip_torch"),
        "geopy": _pkg("geopy"),
        "reverse_geocoder": _pkg("reverse_geocoder"),
        "git_commit": git_commit(),
    }


FINGERPRINT_FIELDS = (
    "image_model",
    "image_pretrained",
    "top_k",
    "gallery_collection",
    "database_collection",
    "qdrant_url",
    "llm_model",
    "llm_base_url",
    "llm_temperature",
    "max_steps",
    "segmenter",
    "segmenter_model",
    "segmenter_labels",
    "nominatim",
    "decode_max_side",
    "max_image_pixels",
    "min_image_side",
    "max_aspect_ratio",
)
"""The settings that change predictions; a run is resumable only with all of them unchanged."""


def file_digest(value: Any) -> str | None:
    """sha256 of a local file named by a setting (a checkpoint, a model config), else None."""
    if not isinstance(value, (str, Path)) or not str(value).strip():
        return None
    path = Path(str(value)).expanduser()
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(settings: Settings, *, mode: str, predictor: str | None = None) -> dict[str, Any]:
    """Everything that changes a prediction: mode, predictor, the prediction settings, the digests of
    local weight/config files, and the code version. ``digest`` is a short hash of the rest."""
    values = settings.model_dump(mode="json")
    fields: dict[str, Any] = {"mode": mode, "predictor": predictor or "agent.load_agent"}
    fields.update({name: values.get(name) for name in FINGERPRINT_FIELDS})
    for name in ("image_model", "image_pretrained", "segmenter_model", "segmenter_labels"):
        digest = file_digest(values.get(name))
        if digest:
            fields[f"{name}_sha256"] = digest
    fields["code_version"] = _pkg("geoagent")
    fields["geoclip_version"] = _pkg("geoclip")
    fields["open_clip_version"] = _pkg("open_clip_torch")
    canonical = json.dumps(fields, sort_keys=True, default=str).encode("utf-8")
    return {"digest": hashlib.sha256(canonical).hexdigest()[:16], "fields": fields}


RANDOM_WEIGHTS = ("none", "random", "")
"""``image_pretrained`` values that leave the image encoder with random weights."""


class ImageModelInfo(BaseModel):
    """The image model and weights behind a run's predictions."""

    encoder: str = Field(description="geoclip (CLIP + GeoCLIP's heads) or fusion:PATH (a trained fusion checkpoint).")
    image_model: str = Field(description="open_clip model name or config file.")
    image_pretrained: str = Field(description="open_clip pretrained tag or checkpoint path; 'none' is random weights.")
    weights_sha256: str | None = Field(default=None, description="sha256 of a local checkpoint file, when the weights are one.")
    random_weights: bool = Field(description="True when the image encoder has random, untrained weights.")
    note: str | None = Field(default=None, description="A warning the report shows loudly (random or untrained weights).")

    def label(self) -> str:
        digest = f", sha256 {self.weights_sha256[:16]}" if self.weights_sha256 else ""
        return f"{self.image_model} / {self.image_pretrained}{digest} (encoder {self.encoder})"


def image_model_info(config: dict[str, Any]) -> ImageModelInfo:
    """What made a run's predictions, from its config.json (its settings and fingerprint)."""
    settings = config.get("settings") or {}
    fields = (config.get("fingerprint") or {}).get("fields") or {}
    pretrained = str(settings.get("image_pretrained", fields.get("image_pretrained", "")) or "")
    random = pretrained.strip().lower() in RANDOM_WEIGHTS
    note = (
        f"RANDOM, UNTRAINED IMAGE WEIGHTS (image_pretrained = {pretrained or 'empty'!r}): these figures measure the "
        "plumbing, not geolocation; they are not comparable with any published row."
        if random
        else None
    )
    return ImageModelInfo(
        encoder=str(settings.get("encoder") or "geoclip"),
        image_model=str(settings.get("image_model", fields.get("image_model", "?"))),
        image_pretrained=pretrained or "?",
        weights_sha256=fields.get("image_pretrained_sha256"),
        random_weights=random,
        note=note,
    )


class SplitInfo(BaseModel):
    """Which part of a benchmark a run covers."""

    dataset: str
    label: str = Field(description="How the reports name it: the benchmark only when the whole test set was run.")
    evaluated: int = Field(description="Photos evaluated (rows of the labels file with an image, after --limit).")
    published_size: int | None = Field(default=None, description="The benchmark's published size, when it has one.")
    full: bool = Field(description="Whether the run covers the whole published test set.")
    labels: str | None = None


def split_info(config: dict[str, Any], n: int | None = None) -> SplitInfo:
    """The run's split, from its config.json's dataset record (``n``: rows in the run, when the
    record does not say how many were evaluated)."""
    from evals.datasets import LAYOUTS

    dataset = config.get("dataset") or {}
    name = str(dataset.get("name") or "?")
    evaluated = int(dataset.get("evaluated") or n or 0)
    layout = LAYOUTS.get(name)
    size = layout.expected_size if layout else None
    labels = dataset.get("labels")
    full = size is not None and evaluated >= size
    if full or size is None:
        label = name if size is None else f"{name} (the full test set, {evaluated} photos)"
    else:
        where = Path(str(labels)).parent.name if labels else ""
        label = f"{name} subset: {evaluated} of {size} photos" + (f" ({where})" if where else "")
    return SplitInfo(dataset=name, label=label, evaluated=evaluated, published_size=size, full=full, labels=labels)


def build_config(
    settings: Settings, *, mode: str, dataset: dict[str, Any], argv: list[str] | None = None, predictor: str | None = None
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "fingerprint": fingerprint(settings, mode=mode, predictor=predictor),
        "mode": mode,
        "dataset": dataset,
        "predictor": predictor or "agent.load_agent",
        "argv": list(sys.argv if argv is None else argv),
        "settings": redacted_settings(settings),
        "versions": versions(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    config["image_model"] = image_model_info(config).model_dump()
    return config


def check_resumable(run_dir: Path, config: dict[str, Any]) -> None:
    """Refuse to append to a run directory that holds a run of another mode, dataset, predictor or
    settings fingerprint (the message names every difference)."""
    path = run_dir / CONFIG_FILE
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is unreadable: {exc}", "use a new --out directory") from exc
    for key in ("mode", "predictor"):
        if old.get(key) != config.get(key):
            raise ConfigError(
                f"{run_dir} holds a run with {key}={old.get(key)!r}, not {config.get(key)!r}",
                "resume with the same options, or pass a new --out directory",
            )
    for key in ("name", "labels"):
        if old.get("dataset", {}).get(key) != config["dataset"].get(key):
            raise ConfigError(
                f"{run_dir} holds a run on dataset {key}={old.get('dataset', {}).get(key)!r}, not {config['dataset'].get(key)!r}",
                "resume with the same --dataset/--labels, or pass a new --out directory",
            )
    before = (old.get("fingerprint") or {}).get("fields")
    now = config["fingerprint"]["fields"]
    if before is None:
        raise ConfigError(
            f"{run_dir} holds a run without a settings fingerprint (an older geoagent)",
            "pass a new --out directory; rows of two configurations must not mix",
        )
    changed = [
        f"{key}: {before.get(key)!r} -> {now.get(key)!r}"
        for key in sorted(set(before) | set(now))
        if before.get(key) != now.get(key)
    ]
    if changed:
        raise ConfigError(
            f"{run_dir} holds a run made with other settings; resuming would mix two systems in one file. "
            f"Changed: {'; '.join(changed)}",
            "resume with the same settings and options, or pass a new --out directory",
        )


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    """Write config.json; on resume the first run's start time is kept and the resumes are listed."""
    path = run_dir / CONFIG_FILE
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        config = {**config, "started_at": old.get("started_at"), "resumed_at": [*old.get("resumed_at", []), config["started_at"]]}
    tmp = path.with_name(f".{CONFIG_FILE}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(config, indent=2, default=str))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
