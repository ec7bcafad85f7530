"""Scene composition from a segmentation: class shares (largest first) and short scene hints."""

from __future__ import annotations

import numpy as np
from PIL import Image
from pydantic import BaseModel

from retrieval_service.core.errors import GeoAgentError
from retrieval_service.evidence.segmentation import Segmenter


class SceneComposition(BaseModel):
    shares: dict[str, float]
    hints: list[str]
    backend: str

    def top(self, n: int = 3) -> list[tuple[str, float]]:
        """The ``n`` largest class shares, largest first."""
        return sorted(self.shares.items(), key=lambda kv: -kv[1])[:n]

    def describe(self, n: int = 3) -> str:
        """The largest shares in words, e.g. "building 50%, sky 30%, road 20%"."""
        return ", ".join(f"{name} {share:.0%}" for name, share in self.top(n))


# label keywords (Cityscapes and ADE20K names) grouped for scene hints
_GROUPS: dict[str, tuple[str, ...]] = {
    "road": ("road", "sidewalk", "path", "runway", "crosswalk", "dirt track"),
    "built": (
        "building",
        "wall",
        "fence",
        "pole",
        "traffic light",
        "traffic sign",
        "house",
        "skyscraper",
        "tower",
        "bridge",
        "signboard",
        "streetlight",
        "railing",
        "column",
        "awning",
    ),
    "vegetation": ("vegetation", "terrain", "tree", "grass", "plant", "field", "palm", "flower"),
    "sky": ("sky",),
    "water": ("sea", "water", "river", "lake", "waterfall", "swimming pool"),
    "shore": ("sand", "beach"),
    "mountain": ("mountain", "hill", "rock"),
    "snow": ("snow",),
    "vehicle": ("car", "truck", "bus", "train", "motorcycle", "bicycle", "van", "boat", "ship", "airplane", "minibike"),
    "people": ("person", "rider"),
    "indoor": ("floor", "ceiling", "bed", "table", "chair", "cabinet", "sofa", "shelf", "carpet"),
}


def _group_of(label: str) -> str | None:
    low = label.lower()
    for group, keys in _GROUPS.items():
        if low in keys or low.split(",")[0].strip() in keys:
            return group
    return None


def scene_hints(group_shares: dict[str, float]) -> list[str]:
    """Short, LMM-readable descriptions of the composition from grouped class shares."""
    g = {k: group_shares.get(k, 0.0) for k in _GROUPS}
    hints: list[str] = []
    if g["indoor"] >= 0.25:
        hints.append("indoor scene")
    if g["road"] >= 0.15 and g["built"] >= 0.15:
        hints.append("urban street")
    elif g["built"] >= 0.3:
        hints.append("built-up area")
    elif g["road"] >= 0.25:
        hints.append("open road")
    if g["water"] >= 0.1 and (g["shore"] >= 0.03 or g["sky"] >= 0.2):
        hints.append("coast")
    elif g["water"] >= 0.1:
        hints.append("water body")
    if g["mountain"] >= 0.1:
        hints.append("mountains")
    if g["snow"] >= 0.1:
        hints.append("snow")
    if g["vegetation"] >= 0.45:
        hints.append("vegetation-dominated")
    elif g["vegetation"] >= 0.2 and g["built"] < 0.1:
        hints.append("rural / natural landscape")
    if g["sky"] >= 0.4:
        hints.append("open view, much sky")
    if g["vehicle"] >= 0.05:
        hints.append("traffic")
    if g["people"] >= 0.05:
        hints.append("people")
    return hints


def compose(
    class_map: np.ndarray, labels: list[str], backend: str, *, min_share: float = 0.01, max_classes: int = 8
) -> SceneComposition:
    """Class shares (largest first, rounded) and scene hints from a class-id map."""
    counts = np.bincount(class_map.ravel().clip(0), minlength=len(labels)).astype(float)
    total = counts.sum()
    if total == 0:
        raise GeoAgentError("the segmenter returned an empty class map", "check the image and the segmentation model")
    fractions = counts / total
    order = np.argsort(-fractions)
    shares: dict[str, float] = {}
    for i in order[:max_classes]:
        if fractions[i] < min_share:
            break
        name = labels[i] if i < len(labels) else f"class {i}"
        shares[name] = round(float(fractions[i]), 2)
    groups: dict[str, float] = {}
    for i, frac in enumerate(fractions):
        group = _group_of(labels[i]) if i < len(labels) else None
        if group:
            groups[group] = groups.get(group, 0.0) + float(frac)
    return SceneComposition(shares=shares, hints=scene_hints(groups), backend=backend)


def describe_scene(segmenter: Segmenter, image: Image.Image) -> SceneComposition:
    """Segment the image and summarise it."""
    return compose(segmenter.segment(image), segmenter.labels, segmenter.name)
