"""State shared by the CLI sub-commands (global options) and the settings they load."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import typer

from agent.settings import Settings
from retrieval_service.core.settings import load_section

S = TypeVar("S", bound=Settings)


@dataclass
class CliState:
    config: Path | None = None
    debug: bool = False


def settings_from(ctx: typer.Context, cls: type[S] = Settings, **overrides: Any) -> S:  # type: ignore[assignment]
    """Settings (of class ``cls``) for a command: --config file, environment, then the command's own overrides."""
    state = ctx.find_root().obj if ctx.find_root().obj else CliState()
    return load_section(cls, state.config, **overrides)
