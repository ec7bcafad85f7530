"""What the first retrieval found, as the LMM modes show it: the chain of DualGeo, G3 and Img2Loc.

* ``similar``: the image database's nearest photos, in the order of DualGeo's geographic re-rank
  (the main cluster first, then nearest to the re-rank's answer);
* ``dissimilar``: the same database's farthest photos (searched with the negated query), so both
  lists come from one source;
* ``gallery``: the GPS gallery's candidates, most probable first: coordinates, not photos, and
  always named so.

Without an image database ``similar`` and ``dissimilar`` are empty and the prompts say so; the
retriever's fallback of dissimilar *gallery points* is never shown as dissimilar photos.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.decision.sources import usable
from agent.state import observations
from retrieval_service.core.types import Candidate
from retrieval_service.evidence.clustering import ClusteringResult


@dataclass(frozen=True)
class Neighbours:
    """The first retrieval's evidence, ready for a prompt."""

    similar: list[Candidate] = field(default_factory=list)
    dissimilar: list[Candidate] = field(default_factory=list)
    gallery: list[Candidate] = field(default_factory=list)
    clustering: ClusteringResult | None = None

    @property
    def has_database(self) -> bool:
        """Whether the image database returned photos (else there is none, or it is empty)."""
        return bool(self.similar)

    def verifiable(self, n: int) -> list[Candidate]:
        """The ``n`` best retrieval candidates to verify: the re-ranked database photos, else the gallery's."""
        return (self.similar or self.gallery)[:n]


def _same_points(a: list[Candidate], b: list[Candidate]) -> bool:
    return len(a) == len(b) and all(
        (x.source, round(x.lat, 4), round(x.lon, 4)) == (y.source, round(y.lat, 4), round(y.lon, 4))
        for x, y in zip(a, b, strict=True)
    )


def in_rerank_order(candidates: list[Candidate], clustering: ClusteringResult | None) -> list[Candidate]:
    """``candidates`` in the re-rank's order when ``clustering`` clustered exactly them, else by score."""
    if clustering is not None and _same_points(clustering.candidates, candidates):
        return clustering.reranked_candidates()
    return sorted(candidates, key=lambda c: -c.score)


def neighbours_of(state: Mapping[str, Any]) -> Neighbours:
    """The neighbours of the latest retrieval in ``state`` (the observe step's in a new run)."""
    obs = observations(state)
    retrieval = obs.retrieval
    if retrieval is None:
        return Neighbours(clustering=obs.clusters)
    database = usable(retrieval.database)
    gallery = sorted(usable(retrieval.gallery), key=lambda c: -(c.probability if c.probability is not None else c.score))
    return Neighbours(
        similar=in_rerank_order(database, obs.clusters),
        dissimilar=[c for c in retrieval.dissimilar if c.source == "database"],
        gallery=gallery,
        clustering=obs.clusters,
    )


def gallery_value(gallery: list[Candidate]) -> str:
    """What the gallery rows' third number is: GeoCLIP's probability (exact search) or the cosine."""
    return "probability" if gallery and all(c.probability is not None for c in gallery) else "similarity"


def points(candidates: list[Candidate], *, value: str = "similarity") -> str:
    """``[[lat, lon, value], ...]`` compactly (``value``: "similarity" = the score, or "probability"), or "none"."""
    if not candidates:
        return "none"
    rows = []
    for c in candidates:
        v = c.probability if value == "probability" and c.probability is not None else c.score
        rows.append([round(c.lat, 4), round(c.lon, 4), round(float(v), 4)])
    return json.dumps(rows, separators=(",", ":"))


def render_neighbours(template: str, no_database: str, nb: Neighbours, n: int) -> str:
    """The ``n`` first of each list through ``template`` (with a database) or ``no_database``."""
    from agent.prompts import render

    value = gallery_value(nb.gallery)
    gallery = points(nb.gallery[:n], value=value)
    if not nb.has_database:
        return render(no_database, gallery=gallery, gallery_value=value)
    return render(
        template,
        similar=points(nb.similar[:n]),
        dissimilar=points(nb.dissimilar[:n]),
        gallery=gallery,
        gallery_value=value,
    )
