"""Class maps for the segmentation view: the segmenter's per-pixel class ids reduced to a small
grid (the majority class of each cell), stored as uint8 with ``VOID_CLASS`` for "no class".

The segmenter is the project's (``retrieval_service.evidence.segmentation``): the same one is used
to precompute training features and to embed new photos, and its labels are recorded in the
checkpoint so that a different segmenter is refused instead of silently mis-read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from retrieval_service.core.errors import ConfigError, ModelMismatchError
from retrieval_service.fusion.config import VOID_CLASS, FeatureSpec

if TYPE_CHECKING:
    from retrieval_service.evidence.segmentation import Segmenter
    from retrieval_service.evidence.settings import EvidenceSettings

MAX_CLASSES = VOID_CLASS  # class ids 0..254 fit a uint8 beside the void value


def reduce_classmap(classmap: np.ndarray, grid: int, num_classes: int) -> np.ndarray:
    """(H, W) class ids -> (grid, grid) uint8: the most frequent valid class of each cell, or
    ``VOID_CLASS`` where a cell holds no valid class (ids outside [0, num_classes) are void)."""
    if classmap.ndim != 2 or classmap.size == 0:
        raise ValueError(f"a class map must be a non-empty 2-D array, got shape {classmap.shape}")
    if num_classes > MAX_CLASSES:
        raise ConfigError(
            f"{num_classes} segmentation classes do not fit a uint8 class map",
            f"use a segmenter with at most {MAX_CLASSES} classes",
        )
    h, w = classmap.shape
    rows = (np.arange(h) * grid) // h
    cols = (np.arange(w) * grid) // w
    cell = rows[:, None] * grid + cols[None, :]
    ids = classmap.astype(np.int64)
    ids = np.where((ids >= 0) & (ids < num_classes), ids, num_classes)  # num_classes = the void bin
    counts = np.bincount((cell * (num_classes + 1) + ids).ravel(), minlength=grid * grid * (num_classes + 1))
    counts = counts.reshape(grid * grid, num_classes + 1)
    best = counts[:, :num_classes].argmax(axis=1)
    empty = counts[:, :num_classes].sum(axis=1) == 0
    out = np.where(empty, VOID_CLASS, best).astype(np.uint8)
    return out.reshape(grid, grid)


class ClassMapper:
    """A segmenter plus the grid: photo -> (grid, grid) uint8 class map."""

    def __init__(self, segmenter: Segmenter, grid: int) -> None:
        if len(segmenter.labels) > MAX_CLASSES:
            raise ConfigError(f"segmenter {segmenter.name} has {len(segmenter.labels)} classes", f"use at most {MAX_CLASSES}")
        self.segmenter = segmenter
        self.grid = grid
        self.labels = tuple(segmenter.labels)

    def __call__(self, image: Image.Image) -> np.ndarray:
        return reduce_classmap(np.asarray(self.segmenter.segment(image)), self.grid, len(self.labels))


def segmenter_settings(spec: FeatureSpec, settings: object) -> EvidenceSettings:
    """The evidence settings that rebuild the segmenter a feature spec was made with: the user's
    own segmenter settings when they name a model, else the backend and model recorded in the spec."""
    from retrieval_service.evidence.settings import EvidenceSettings

    if isinstance(settings, EvidenceSettings) and settings.segmenter_model:
        return settings
    device = getattr(settings, "device", "auto")
    return EvidenceSettings(
        segmenter=spec.seg_backend if spec.seg_backend in ("tflite", "segformer") else "auto",
        segmenter_model=spec.seg_model,
        segmenter_labels=getattr(settings, "segmenter_labels", None),
        device=device,
    )


def class_mapper_for(spec: FeatureSpec, settings: object) -> ClassMapper:
    """The class mapper a checkpoint needs, checked against the labels it was trained with."""
    from retrieval_service.evidence.segmentation import make_segmenter

    segmenter = make_segmenter(segmenter_settings(spec, settings))
    if tuple(segmenter.labels) != tuple(spec.seg_labels):
        raise ModelMismatchError(
            f"the fusion model was trained on class maps of a {len(spec.seg_labels)}-class segmenter "
            f"({spec.seg_backend}: {spec.seg_model}) but the configured segmenter has {len(segmenter.labels)} classes "
            f"({', '.join(segmenter.labels[:5])}...)",
            "set GEOAGENT_SEGMENTER / GEOAGENT_SEGMENTER_MODEL to the segmenter used for training",
        )
    return ClassMapper(segmenter, spec.seg_grid)
