"""State shared by the CLI sub-commands (global options) and the settings they load."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, overload

import typer

from agent.settings import Settings
from retrieval_service.core.settings import SettingsSection, load_section

S = TypeVar("S", bound=SettingsSection)


@dataclass
class CliState:
    config: Path | None = None
    debug: bool = False


@overload
def settings_from(ctx: typer.Context, cls: None = None, **overrides: Any) -> Settings: ...
@overload
def settings_from(ctx: typer.Context, cls: type[S], **overrides: Any) -> S: ...
def settings_from(ctx: typer.Context, cls: type[SettingsSection] | None = None, **overrides: Any) -> SettingsSection:
    """Settings (of class ``cls``, the agent's ``Settings`` by default) for a command: --config file,
    environment, then the command's own overrides."""
    state = ctx.find_root().obj if ctx.find_root().obj else CliState()
    return load_section(cls or Settings, state.config, **overrides)
