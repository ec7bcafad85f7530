"""The heavy objects behind the tools, built lazily from the settings on first use and reused."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from retrieval_service.core.errors import ConfigError, GeoAgentError
from retrieval_service.evidence.settings import EvidenceSettings
from retrieval_service.retrieval.settings import RetrievalSettings

if TYPE_CHECKING:
    from retrieval_service.evidence.geocoding import ReverseGeocoder
    from retrieval_service.evidence.ocr import TextReader
    from retrieval_service.evidence.segmentation import Segmenter
    from retrieval_service.retrieval.retriever import Retriever

logger = logging.getLogger(__name__)


class ToolSettings(RetrievalSettings, EvidenceSettings):
    """The settings the tools' back ends read (retrieval and evidence sections); the agent's
    ``Settings`` is one."""


class Services:
    """Shared back-ends for the tools. Pass ready objects to override (tests, the HTTP client)."""

    def __init__(
        self,
        settings: ToolSettings,
        *,
        retriever: Retriever | None = None,
        segmenter: Segmenter | None = None,
        text_reader: TextReader | None = None,
        geocoder: ReverseGeocoder | None = None,
    ) -> None:
        self.settings: ToolSettings = settings
        self._retriever = retriever
        self._segmenter = segmenter
        self._segmenter_error: GeoAgentError | None = None
        self._text_reader = text_reader
        self._geocoder = geocoder
        self._lock = threading.RLock()

    @property
    def retriever(self) -> Retriever:
        """The ``Retriever`` (image->GPS retrieval, verification); with ``GEOAGENT_RETRIEVAL_URL`` set,
        a ``RetrievalClient`` with the same interface that asks that service over HTTP."""
        with self._lock:
            if self._retriever is None and self.settings.retrieval_url:
                from retrieval_service.service.client import RetrievalClient

                self._retriever = RetrievalClient(self.settings)  # type: ignore[assignment]
            if self._retriever is None:
                try:
                    from retrieval_service.retrieval.retriever import Retriever
                except ImportError as exc:
                    raise ConfigError(
                        f"the retriever is not available: {exc}",
                        "install geoagent completely (retrieval_service.retrieval.retriever)",
                    ) from exc
                self._retriever = Retriever.from_settings(self.settings)
            return self._retriever

    @property
    def segmenter(self) -> Segmenter:
        """The configured segmenter; raises ConfigError when segmentation is unavailable."""
        with self._lock:
            if self._segmenter is None:
                if self._segmenter_error is not None:  # do not retry a slow failure on every call
                    raise self._segmenter_error
                from retrieval_service.evidence.segmentation import make_segmenter

                try:
                    self._segmenter = make_segmenter(self.settings)
                except GeoAgentError as exc:
                    self._segmenter_error = exc
                    raise
            return self._segmenter

    @property
    def text_reader(self) -> TextReader:
        with self._lock:
            if self._text_reader is None:
                from retrieval_service.evidence.ocr import TextReader

                self._text_reader = TextReader()
            return self._text_reader

    @property
    def geocoder(self) -> ReverseGeocoder:
        with self._lock:
            if self._geocoder is None:
                from retrieval_service.evidence.geocoding import ReverseGeocoder

                self._geocoder = ReverseGeocoder(self.settings)
            return self._geocoder
