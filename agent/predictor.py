"""What every predictor offers (the agent's graphs and the registered baselines alike): ``invoke``
one photo, ``stream`` its steps, ``batch`` many, ``check`` that the models load."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agent.prediction import Prediction
from agent.settings import Settings
from retrieval_service.core.errors import ImageLoadError
from retrieval_service.core.media import ResolvedImage, resolve_image

log = logging.getLogger(__name__)


class RunResult(BaseModel):
    """A prediction with the run's timings (the benchmarks use them)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    prediction: Prediction
    total_ms: float
    prepare_ms: float = Field(default=0.0, description="Resolving and checking the image before the run.")
    node_ms: dict[str, float] = Field(default_factory=dict, description="Wall time per graph node.")
    node_own_ms: dict[str, float] = Field(default_factory=dict, description="Per node, the time outside tools and models.")

    @property
    def tool_ms(self) -> float:
        """Time spent inside tools and the LMM (from the trace)."""
        return sum(t.latency_ms for t in self.prediction.trace)


class Predictor(ABC):
    """Geolocates photos in one mode."""

    mode: str
    settings: Settings
    chat_model: Any = None

    def resolve(self, input: Any) -> ResolvedImage:
        """The photo of ``{"image": ...}`` (or of the image itself), resolved once into a checked local
        file (a ``ResolvedImage`` passes through as it is)."""
        if isinstance(input, dict):
            if "image" not in input:
                raise ImageLoadError("the input has no 'image' key", 'call invoke({"image": <path|bytes|PIL image|url>})')
            input = input["image"]
        if input is None:
            raise ImageLoadError("no image given", 'call invoke({"image": <path|bytes|PIL image|url>})')
        return resolve_image(input, self.settings.cache_dir, self.settings)

    def check(self) -> None:
        """Load what the predictor needs now; raise a GeoAgentError (e.g. missing weights) before any photo."""

    @abstractmethod
    def run(self, input: Any, config: dict | None = None) -> RunResult:
        """Geolocate one photo, with timings."""

    def invoke(self, input: Any, config: dict | None = None) -> Prediction:
        """Geolocate one photo: ``{"image": path|bytes|PIL image|url}`` (or the image itself)."""
        return self.run(input, config).prediction

    def stream(self, input: Any, config: dict | None = None) -> Iterator[dict[str, Any]]:
        """Step events as they happen; this default yields only the final ``prediction`` event."""
        yield {"type": "prediction", "prediction": self.invoke(input, config)}

    def batch(self, inputs: list[Any], *, max_workers: int = 1) -> list[Prediction | Exception]:
        """Geolocate many photos; a failed photo gives its exception in place of a Prediction."""

        def one(item: Any) -> Prediction | Exception:
            try:
                return self.invoke(item)
            except Exception as exc:  # reported per photo, the others go on
                log.warning("photo failed: %s", exc)
                return exc

        if max_workers <= 1:
            return [one(i) for i in inputs]
        with ThreadPoolExecutor(max_workers=max_workers) as pool:
            return list(pool.map(one, inputs))
