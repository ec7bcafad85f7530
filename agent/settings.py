"""The agent's settings section (the LMM and the step budget) and ``Settings``: the one settings
object users configure, composed from every layer's section.

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
    """The LMM (any OpenAI-compatible endpoint) and the agent loop's limits."""

    llm_model: str | None = Field(default=None, description="Chat model name at an OpenAI-compatible endpoint; unset = no-LMM policy.")
    llm_base_url: str | None = None
    llm_api_key: str | None = None
    llm_timeout_s: float = Field(default=60.0, gt=0)
    llm_max_retries: int = Field(default=2, ge=0, le=10)
    llm_temperature: float = Field(default=0.0, ge=0, le=2)
    max_steps: int = Field(default=12, ge=2, le=200, description="Tool-calling rounds before the agent must answer.")
    confidence_km: Literal[1, 25, 200, 750, 2500] = Field(
        default=25, description="confidence = the (calibrated) probability that the error is at most this many km.")


class Settings(ToolSettings, AgentSettings):
    """All of geoagent's configuration. Each field is ``GEOAGENT_<NAME>`` in the environment."""


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings: overrides > environment > TOML file > defaults (ConfigError when invalid)."""
    return load_section(Settings, config_file, **overrides)
