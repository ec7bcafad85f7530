"""The evaluation section of the settings, and the settings an evaluation run uses (everything
the agent reads plus this section)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from agent.settings import Settings
from retrieval_service.core.settings import CoreSettings, load_section


class EvalSettings(CoreSettings):
    """How benchmark runs execute and how their reports are computed."""

    eval_workers: int = Field(default=1, ge=1, le=256, description="Predictions running at once in `geoagent eval run`.")
    eval_bootstrap_resamples: int = Field(
        default=1000, ge=100, le=100_000, description="Bootstrap resamples for the 95% intervals."
    )
    eval_bootstrap_seed: int = Field(default=0, description="Seed of the bootstrap resampling.")


class EvalRunSettings(Settings, EvalSettings):
    """The agent's settings plus the evaluation section (``GEOAGENT_EVAL_*``)."""


def load_eval_settings(config_file: str | Path | None = None, **overrides: Any) -> EvalRunSettings:
    return load_section(EvalRunSettings, config_file, **overrides)
