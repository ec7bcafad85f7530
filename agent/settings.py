"""The agent's settings section (the LMM, its limits and costs, the step budget) and ``Settings``:
the one settings object users configure, composed from every layer's section.

``Settings`` derives from the retrieval and evidence sections (``ToolSettings``) and the agent's, so each field keeps its flat
``GEOAGENT_<NAME>`` variable (and TOML key) while code below the agent is typed against the section
it needs (``RetrievalSettings`` for the retriever, ``EvidenceSettings`` for the evidence back ends).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from retrieval_service.core.settings import CoreSettings, load_section
from tools.services import ToolSettings


class AgentSettings(CoreSettings):
    """The LMM (an OpenAI-compatible endpoint by default), its fault and cost limits, and the loop's budget."""

    llm_model: str | None = Field(
        default=None,
        description=(
            "Chat model name; 'provider:model' (e.g. 'anthropic:claude-sonnet-4') picks another provider; unset = no-LMM policy."
        ),
    )
    llm_provider: str = Field(
        default="openai",
        description=("Provider when llm_model has no 'provider:' prefix: 'openai' = any OpenAI-compatible endpoint."),
    )
    llm_base_url: str | None = Field(
        default=None,
        description="Base URL of the OpenAI-compatible endpoint (e.g. http://localhost:8000/v1); unset = the provider's own.",
    )
    llm_api_key: str | None = Field(default=None, description="API key of the LMM endpoint.")
    llm_timeout_s: float = Field(default=60.0, gt=0, description="Timeout of one LMM request.")
    llm_max_retries: int = Field(
        default=2, ge=0, le=10, description="Retries of a failed LMM request (jittered, Retry-After honoured)."
    )
    llm_retry_initial_s: float = Field(default=1.0, ge=0, le=60, description="First retry wait; it doubles, with jitter.")
    llm_retry_max_s: float = Field(
        default=30.0, ge=0, le=600, description="Longest wait between retries (also caps Retry-After)."
    )
    llm_breaker_failures: int = Field(
        default=3,
        ge=1,
        le=100,
        description=(
            "Consecutive failed LMM requests that open the circuit breaker: the LMM is then skipped for the "
            "rest of the run or batch (the no-LMM policy decides)."
        ),
    )
    llm_breaker_reset_s: float = Field(
        default=600.0,
        ge=0,
        description=("After this long an open breaker lets one trial request through; 0 = stay open for the batch."),
    )
    llm_max_calls_per_photo: int = Field(default=40, ge=1, le=10_000, description="LMM requests allowed per photo.")
    llm_max_tokens_per_photo: int = Field(default=400_000, ge=1, description="Input + output tokens allowed per photo.")
    llm_temperature: float = Field(
        default=0.0,
        ge=0,
        le=2,
        description="Sampling temperature of the LMM's requests (mode rag's proposals use rag_temperature).",
    )
    llm_resend_photo: bool = Field(
        default=False,
        description=(
            "Attach the photo to every LMM request of a conversation; by default only the first request "
            "carries it (the model is asked to note what it sees)."
        ),
    )
    llm_image_max_side: int = Field(
        default=1024, ge=64, le=4096, description="The photo is downscaled to this many pixels (longest side) for the LMM."
    )
    llm_price_input_per_mtok: float | None = Field(
        default=None, ge=0, description="Price of one million input tokens (reports show the money spent)."
    )
    llm_price_output_per_mtok: float | None = Field(default=None, ge=0, description="Price of one million output tokens.")
    llm_deadline_s: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description=(
            "Wall-clock seconds a photo may spend waiting on the LMM, retries and their waits included; then the "
            "no-LMM policy answers, with a warning. 0 = no deadline."
        ),
    )
    database_url: str | None = Field(
        default=None,
        description=(
            "Where `geoagent serve` keeps conversations: postgresql://user:password@host:5432/db (shared by replicas); "
            "unset = a SQLite file under the data dir."
        ),
    )
    max_steps: int = Field(default=12, ge=2, le=200, description="Tool-calling rounds before the agent must answer.")
    confidence_km: Literal[1, 25, 200, 750, 2500] = Field(
        default=25, description="confidence = the (calibrated) probability that the error is at most this many km."
    )
    rag_samples: int = Field(default=1, ge=1, le=20, description="RAG mode: replies sampled per prompt (0/5/10/15 neighbours).")
    rag_temperature: float = Field(default=0.7, ge=0, le=2, description="RAG mode: sampling temperature of the proposals.")

    def lmm_cost(self, input_tokens: float, output_tokens: float) -> float | None:
        """The money ``input_tokens`` + ``output_tokens`` cost at the configured prices (None without prices)."""
        if self.llm_price_input_per_mtok is None and self.llm_price_output_per_mtok is None:
            return None
        return (
            input_tokens * (self.llm_price_input_per_mtok or 0.0) + output_tokens * (self.llm_price_output_per_mtok or 0.0)
        ) / 1e6


class Settings(ToolSettings, AgentSettings):
    """All of geoagent's configuration. Each field is ``GEOAGENT_<NAME>`` in the environment."""


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings: overrides > environment > TOML file > defaults (ConfigError when invalid)."""
    return load_section(Settings, config_file, **overrides)
