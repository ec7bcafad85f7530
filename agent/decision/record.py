"""The decision's structured record: what the policy decided and with which evidence, read once from
the objects the decision used, so that the rationale written from it (``rationale.describe``)
cannot contradict the answer: the cluster it names is the one that holds the answer, and its
counts, distances and sources come from the same objects."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field

from retrieval_service.core.geo import distance_km, distances_km
from retrieval_service.core.types import Candidate
from retrieval_service.evidence.clustering import ClusteringResult

HOLD_KM = 50.0
"""A cluster holds the answer when one of its members lies within this distance (DBSCAN's eps)."""


class AnswerCluster(BaseModel):
    """The re-rank's cluster that holds the answer: its centre, members, extent, what it clusters."""

    lat: float
    lon: float
    members: int
    radius_km: float = Field(description="Farthest member from the centre.")
    pool: str = Field(description="What the re-rank clustered: similar database photos, or GPS gallery candidates.")
    answer_km: float = Field(description="Distance from the answer to the cluster's nearest member.")
    main: bool = Field(description="Whether it is the re-rank's main cluster.")


class DecisionRecord(BaseModel):
    """What the policy decided and why, in numbers."""

    lat: float
    lon: float
    radius_km: float = Field(description="The confidence radius the answer maximises the probability within.")
    mass: float = Field(description="The probability within radius_km of the answer.")
    shares: dict[str, float] = Field(default_factory=dict, description="Each source's share of that probability.")
    retrieval: dict[str, int] = Field(default_factory=dict, description="Retrieval candidates per source.")
    near: int = Field(default=0, description="Retrieval candidates within HOLD_KM of the answer.")
    cluster: AnswerCluster | None = None
    label: str = ""
    verification: float | None = None
    places_counted: list[str] = Field(default_factory=list)
    places_not_counted: list[str] = Field(default_factory=list)

    @property
    def decided_by(self) -> str | None:
        return next(iter(self.shares), None)


def holding_cluster(clustering: ClusteringResult | None, lat: float, lon: float, pool: str) -> AnswerCluster | None:
    """The re-rank's cluster with a member within ``HOLD_KM`` of the answer (the main one first,
    then the nearest), or None."""
    if clustering is None or not clustering.candidates:
        return None
    best: AnswerCluster | None = None
    for i, cluster in enumerate(clustering.clusters):
        members = [clustering.candidates[m] for m in cluster.members if m < len(clustering.candidates)]
        if not members:
            continue
        nearest = float(distances_km(lat, lon, [c.lat for c in members], [c.lon for c in members]).min())
        if nearest > HOLD_KM:
            continue
        found = AnswerCluster(
            lat=cluster.lat,
            lon=cluster.lon,
            members=cluster.support,
            radius_km=cluster.radius_km,
            pool=pool,
            answer_km=nearest,
            main=i == 0,
        )
        if best is None or (found.main, -found.answer_km) > (best.main, -best.answer_km):
            best = found
    return best


def build_record(
    lat: float,
    lon: float,
    *,
    radius_km: float,
    mass: float,
    shares: dict[str, float],
    retrieval: Sequence[Candidate],
    clustering: ClusteringResult | None,
    pool: str,
    label: str = "",
    verification: float | None = None,
    places_counted: Sequence[str] = (),
    places_not_counted: Sequence[str] = (),
) -> DecisionRecord:
    """The record of a decision at (lat, lon) from the objects the decision used."""
    per_source: dict[str, int] = {}
    for c in retrieval:
        per_source[c.source] = per_source.get(c.source, 0) + 1
    near = sum(1 for c in retrieval if distance_km(lat, lon, c.lat, c.lon) <= HOLD_KM)
    return DecisionRecord(
        lat=lat,
        lon=lon,
        radius_km=radius_km,
        mass=mass,
        shares={k: round(v, 4) for k, v in shares.items()},
        retrieval=per_source,
        near=near,
        cluster=holding_cluster(clustering, lat, lon, pool),
        label=label,
        verification=verification,
        places_counted=list(dict.fromkeys(places_counted)),
        places_not_counted=list(dict.fromkeys(places_not_counted)),
    )
