"""geoagent's retrieval service: everything below the agent's decision.

Rooms (each a subpackage):

* ``core``: settings machinery, errors, the shared types (``Candidate``, ``Place``...), geo math,
  the photo handle (``Photo``: resolved once) and media checks, CSV tables, the model-hub check.
* ``retrieval``: the image encoder, GeoCLIP heads, the GPS gallery, vector stores, ingest and
  ``Retriever`` (photo -> candidates).
* ``evidence``: the back ends of the evidence tools (EXIF, OCR with gazetteer and scripts,
  segmentation and scene composition, reverse geocoding, clustering).

Importing this package is light: heavy modules (torch, Qdrant) load when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from retrieval_service.core.errors import (
    ConfigError,
    DatasetError,
    GeoAgentError,
    ImageLoadError,
    ModelMismatchError,
    StoreError,
    WeightsNotFoundError,
)
from retrieval_service.core.photo import Photo
from retrieval_service.core.types import Candidate, GeoFilter, Location, Place, RetrievalResult, Source, Verification
from retrieval_service.evidence.settings import EvidenceSettings
from retrieval_service.retrieval.settings import RetrievalSettings

if TYPE_CHECKING:
    from retrieval_service.retrieval.retriever import Retriever

__all__ = [
    "Candidate",
    "ConfigError",
    "DatasetError",
    "EvidenceSettings",
    "GeoAgentError",
    "GeoFilter",
    "ImageLoadError",
    "Location",
    "ModelMismatchError",
    "Photo",
    "Place",
    "RetrievalResult",
    "RetrievalSettings",
    "Retriever",
    "Source",
    "StoreError",
    "Verification",
    "WeightsNotFoundError",
]


def __getattr__(name: str) -> Any:
    if name == "Retriever":
        from retrieval_service.retrieval.retriever import Retriever

        return Retriever
    raise AttributeError(f"module 'retrieval_service' has no attribute {name!r}")
