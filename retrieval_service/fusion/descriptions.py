"""Place descriptions as evidence (TransGeoCLIP's image-text-GPS joint embedding at inference).

A fusion checkpoint trained with text maps "A photo taken in {city}, {region}, {country}." into the
space of its photos and coordinates. For a photo, the distinct GeoNames towns nearest its retrieval
candidates are described that way, each description is scored against the photo (cosine, then a
softmax at the checkpoint's text temperature), and the towns become candidates of source "text".
What this evidence is worth has not been measured here (no trained text branch on this machine):
its row in the evidence table is a stated prior.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from retrieval_service.core.geo import country_name, nearest_places
from retrieval_service.core.types import Candidate
from retrieval_service.fusion.data import text_prompt
from retrieval_service.fusion.encoder import FusionEncoder


def place_descriptions(coords: Sequence[tuple[float, float]]) -> list[tuple[float, float, str, str]]:
    """(lat, lon, town name, description) of the distinct towns nearest ``coords``, in order."""
    seen: dict[tuple[str, str, str], tuple[float, float, str, str]] = {}
    for row in nearest_places(coords):
        name, region, cc = str(row.get("name") or ""), str(row.get("admin1") or ""), str(row.get("cc") or "")
        prompt = text_prompt(name, region, country_name(cc))
        if prompt and (name, region, cc) not in seen:
            seen[(name, region, cc)] = (float(row["lat"]), float(row["lon"]), name, prompt)
    return list(seen.values())


def text_candidates(
    encoder: FusionEncoder, gps: np.ndarray, coords: Sequence[tuple[float, float]], limit: int
) -> list[Candidate]:
    """The towns near ``coords`` ranked by how well their descriptions match the photo (``gps``: its
    unit vector in the shared space), best first, ``limit`` at most; probabilities over the towns."""
    places = place_descriptions(coords)
    if not places:
        return []
    vectors = encoder.encode_descriptions([p[3] for p in places])
    cosines = vectors @ np.asarray(gps, np.float32).ravel()
    logits = encoder.text_scale * cosines.astype(np.float64)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    order = np.argsort(-probs)[:limit]
    return [
        Candidate(
            lat=places[i][0],
            lon=places[i][1],
            score=float(cosines[i]),
            probability=float(probs[i]),
            source="text",
            payload={"name": places[i][2], "description": places[i][3]},
        )
        for i in order.tolist()
    ]
