"""The one settings object: ``GEOAGENT_*`` environment variables and an optional TOML file.

Precedence (highest first): explicit keyword overrides, environment variables, the TOML file
(``GEOAGENT_CONFIG`` or ``--config``; keys are the field names below), then the defaults.
Settings are passed down explicitly; library code never reads the environment itself.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from retrieval_service.errors import ConfigError


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "geoagent"


class Settings(BaseSettings):
    """All of geoagent's configuration. Each field is ``GEOAGENT_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="GEOAGENT_", extra="ignore", validate_default=True)

    # storage
    data_dir: Path = Field(default_factory=_default_data_dir, description="Where collections, caches and sessions live.")
    qdrant_url: str | None = Field(default=None, description="Qdrant server/cluster URL; unset = embedded Qdrant under data_dir.")
    qdrant_api_key: str | None = None
    gallery_collection: str = "geoclip_gallery"
    database_collection: str = "image_database"

    # image encoder
    image_model: str = Field(default="ViT-L-14", description="open_clip model name.")
    image_pretrained: str = Field(
        default="openai",
        description="open_clip pretrained tag, a local checkpoint path, or 'none' for random weights (plumbing only).",
    )
    device: str = Field(default="auto", description="'auto', 'cpu', 'cuda', 'cuda:1', 'mps'.")
    batch_size: int = Field(default=32, ge=1, le=4096)

    # retrieval defaults
    top_k: int = Field(default=20, ge=1, le=1000)

    # segmentation / OCR / geocoding
    segmenter: Literal["auto", "tflite", "segformer", "none"] = "auto"
    segmenter_model: str | None = Field(
        default=None, description="TFLite model path (tflite) or hub id (segformer)."
    )
    segmenter_labels: str | None = Field(default=None, description="Labels file for a TFLite model.")
    nominatim: bool = Field(default=False, description="Also ask OpenStreetMap Nominatim (online, 1 request/s).")
    nominatim_user_agent: str = "geoagent (https://pypi.org/project/geoagent)"

    # LMM
    llm_model: str | None = Field(default=None, description="Chat model name at an OpenAI-compatible endpoint; unset = no-LMM policy.")
    llm_base_url: str | None = None
    llm_api_key: str | None = None
    llm_timeout_s: float = Field(default=60.0, gt=0)
    llm_max_retries: int = Field(default=2, ge=0, le=10)
    llm_temperature: float = Field(default=0.0, ge=0, le=2)
    max_steps: int = Field(default=12, ge=2, le=200, description="Tool-calling rounds before the agent must answer.")

    @field_validator("data_dir", mode="before")
    @classmethod
    def _expand(cls, v: Any) -> Any:
        return Path(v).expanduser() if isinstance(v, (str, Path)) else v

    @field_validator("qdrant_url", "llm_model", "llm_base_url", "llm_api_key", "segmenter_model", mode="before")
    @classmethod
    def _empty_is_none(cls, v: Any) -> Any:
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

    @property
    def embedded_qdrant_path(self) -> Path:
        return self.data_dir / "qdrant"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}", "pass an existing TOML file or unset GEOAGENT_CONFIG")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}", "fix the syntax (key = \"value\" lines)") from exc
    # allow a [geoagent] table or top-level keys
    return dict(data.get("geoagent", data))


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings: overrides > environment > TOML file > defaults.

    Raises ConfigError with the offending field named when a value is invalid.
    """
    file_values: dict[str, Any] = {}
    path = config_file or os.environ.get("GEOAGENT_CONFIG")
    if path:
        file_values = _read_toml(Path(path).expanduser())
    env_keys = {k[len("GEOAGENT_"):].lower() for k in os.environ if k.startswith("GEOAGENT_")}
    init = {k: v for k, v in file_values.items() if k not in env_keys}
    init.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**init)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(
            f"invalid settings: {problems}",
            "check the GEOAGENT_* environment variables and the config file",
        ) from exc
