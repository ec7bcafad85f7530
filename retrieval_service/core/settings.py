"""Settings machinery and the core section.

Each layer declares the settings it owns as a *section* (a pydantic-settings class deriving from
``SettingsSection``): the core (data dir, device), retrieval (``retrieval_service.retrieval.settings``),
evidence (``retrieval_service.evidence.settings``), the agent and its LMM (``agent.settings``) and the
evaluation (``evals.settings``). The one object users configure composes the sections by
inheritance (``agent.settings.Settings``), so every field keeps its flat ``GEOAGENT_<NAME>``
environment variable and code that needs one concern can be typed against that section alone.

Precedence (highest first): explicit keyword overrides, environment variables, the TOML file
(``GEOAGENT_CONFIG`` or ``--config``; keys are the field names in lower case), then the defaults.
Settings are passed down explicitly; library code never reads the environment itself.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from retrieval_service.core.errors import ConfigError

ENV_PREFIX = "GEOAGENT_"


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "geoagent"


class SettingsSection(BaseSettings):
    """Base of every settings section: ``GEOAGENT_*`` variables, blank strings read as unset."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", validate_default=True)

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_unset(cls, v: Any) -> Any:
        return None if isinstance(v, str) and not v.strip() else v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings)


class CoreSettings(SettingsSection):
    """Where geoagent keeps its data and which device runs the models."""

    data_dir: Path = Field(default_factory=_default_data_dir, description="Where collections, caches and sessions live.")
    device: str = Field(default="auto", description="'auto', 'cpu', 'cuda', 'cuda:1', 'mps'.")

    @field_validator("data_dir", mode="before")
    @classmethod
    def _expand(cls, v: Any) -> Any:
        if v is None or (isinstance(v, str) and not v.strip()):
            return _default_data_dir()
        return Path(v).expanduser() if isinstance(v, (str, Path)) else v

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"


S = TypeVar("S", bound=SettingsSection)


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}", "pass an existing TOML file or unset GEOAGENT_CONFIG")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}", 'fix the syntax (key = "value" lines)') from exc
    # allow a [geoagent] table or top-level keys
    return dict(data.get("geoagent", data))


def load_section(cls: type[S], config_file: str | Path | None = None, **overrides: Any) -> S:
    """Build a settings object of class ``cls``: overrides > environment > TOML file > defaults.

    Raises ConfigError with the offending field named when a value is invalid.
    """
    file_values: dict[str, Any] = {}
    path = config_file or os.environ.get("GEOAGENT_CONFIG")
    if path:
        file_values = _read_toml(Path(path).expanduser())
    env_keys = {k[len(ENV_PREFIX) :].lower() for k in os.environ if k.startswith(ENV_PREFIX)}
    init = {k: v for k, v in file_values.items() if k not in env_keys}
    init.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return cls(**init)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}" for err in exc.errors())
        raise ConfigError(
            f"invalid settings: {problems}",
            "check the GEOAGENT_* environment variables and the config file",
        ) from exc
