"""State shared by the CLI sub-commands (global options) and the settings they load."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from retrieval_service.settings import Settings, load_settings


@dataclass
class CliState:
    config: Path | None = None
    debug: bool = False


def settings_from(ctx: typer.Context, **overrides: Any) -> Settings:
    """Settings for a command: --config file, environment, then the command's own overrides."""
    state = ctx.find_root().obj if ctx.find_root().obj else CliState()
    return load_settings(state.config, **overrides)
