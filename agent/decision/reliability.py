"""How much each evidence source has earned: its weight and spread in the mixture, from a
measurement stored with its provenance (``agent/decision/data/evidence_sources.json``, written by
``python -m evals.bench_evidence --write`` on the IM2GPS3k dev split only).

A row counts, over the split's photos, how often the source gave a place (``present``) and how
often its top place was within 25 / 200 / 750 km of the truth (``within``). Rows are ``measured``
or stated priors awaiting a measurement (the retrieval sources need real CLIP weights, the LMM an
endpoint); a measured row's shares are shrunk towards its prior by ``PRIOR_STRENGTH`` pseudo-photos
(the dev split is small).

* Point sources (places read in the photo, the LMM's proposals) become their measured error
  distribution: at each place, one kernel per band (95% of it within 25, 200 or 750 km) weighted by
  the share of top places that fell in that band, and the rest of the source's weight spread over
  the Earth. A source that is often wrong thus puts little mass near its place, and a narrow
  component wins the answer only when it carries the mass.
* Kernel sources (the GPS gallery, the image database, EXIF GPS) keep their own distributions
  (``agent.decision.sources``); the row gives their weight and kernel spread.
"""

from __future__ import annotations

import json
import math
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from retrieval_service.core.errors import ConfigError

BANDS_KM: tuple[int, ...] = (25, 200, 750)
BAND_COVERAGE = 0.95
"""Each band's kernel holds this share of its mass within the band's distance."""
PRIOR_STRENGTH = 4.0
"""Pseudo-photos of the prior a measured row is shrunk towards."""
FORMAT = 1
DATA_FILE = "evidence_sources.json"


def band_spread_km(limit_km: float) -> float:
    """The 1-sigma spread of a kernel holding ``BAND_COVERAGE`` of its mass within ``limit_km``
    (P(error <= r) = 1 - exp(-r^2 / 2 s^2) for a narrow vMF kernel)."""
    return limit_km / math.sqrt(-2.0 * math.log(1.0 - BAND_COVERAGE))


class Shares(BaseModel):
    """P(top place within t km of the truth), for t in ``BANDS_KM``."""

    within_25: float = Field(ge=0, le=1)
    within_200: float = Field(ge=0, le=1)
    within_750: float = Field(ge=0, le=1)

    def values(self) -> list[float]:
        return [self.within_25, self.within_200, self.within_750]


class SourceRow(BaseModel):
    """One evidence source: what was measured, the prior, and how it enters the mixture."""

    kind: Literal["points", "kernel"]
    measured: bool = Field(description="True: counted on the split; False: a stated prior awaiting a measurement.")
    photos: int = Field(default=0, ge=0, description="Photos of the split looked at.")
    present: int = Field(default=0, ge=0, description="Photos for which the source gave a place.")
    within: dict[str, int] = Field(default_factory=dict, description="Photos whose top place was within t km (t = 25, 200, 750).")
    prior: Shares
    weight: float = Field(gt=0, description="The source's share of the mixture before normalisation.")
    spread_km: float | None = Field(default=None, description="Kernel sources: the spread of one candidate.")
    note: str = ""

    def shares(self) -> Shares:
        """The shares the mixture uses: measured counts shrunk towards the prior, or the prior."""
        if not self.measured or not self.present:
            return self.prior
        n = self.present + PRIOR_STRENGTH
        values = [
            (self.within.get(str(t), 0) + PRIOR_STRENGTH * p) / n for t, p in zip(BANDS_KM, self.prior.values(), strict=True)
        ]
        for i in range(1, len(values)):  # cumulative by construction; kept explicit
            values[i] = max(values[i], values[i - 1])
        return Shares(within_25=values[0], within_200=values[1], within_750=values[2])

    def bands(self) -> list[tuple[float | None, float]]:
        """(spread km or None for uniform, share of the source's weight) per band: the measured error
        distribution of a point source around its place."""
        cumulative = self.shares().values()
        out: list[tuple[float | None, float]] = []
        previous = 0.0
        for limit, share in zip(BANDS_KM, cumulative, strict=True):
            out.append((band_spread_km(limit), max(0.0, share - previous)))
            previous = max(previous, share)
        out.append((None, max(0.0, 1.0 - previous)))
        return out


class Provenance(BaseModel):
    """Where a table's measurements come from."""

    split: str
    photos: int
    date: str
    commit: str
    image_model: str | None = None
    image_pretrained: str | None = None
    random_weights: bool | None = Field(
        default=None, description="Whether the image weights were random (no retrieval rows measured)."
    )
    ocr: str | None = None
    gazetteer: str | None = None
    command: str = ""


class EvidenceTable(BaseModel):
    """Every source's row, with the provenance of the measurement."""

    format: int = FORMAT
    provenance: Provenance
    sources: dict[str, SourceRow]

    def row(self, source: str) -> SourceRow:
        if source not in self.sources:
            raise ConfigError(
                f"the evidence table has no row for {source!r}", "regenerate it: python -m evals.bench_evidence --write"
            )
        return self.sources[source]


def data_path() -> Path:
    """The table shipped in the package."""
    return Path(str(resources.files("agent.decision").joinpath("data", DATA_FILE)))


@cache
def load_table(path: str | None = None) -> EvidenceTable:
    """The evidence table (the shipped one by default), read once."""
    file = Path(path) if path else data_path()
    try:
        table = EvidenceTable.model_validate(json.loads(file.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"the evidence table {file} is unreadable: {exc}", "reinstall geoagent, or regenerate it") from exc
    if table.format != FORMAT:
        raise ConfigError(f"the evidence table {file} has format {table.format}, not {FORMAT}", "regenerate it")
    return table
