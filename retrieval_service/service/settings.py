"""The service section of the settings: limits and access of ``geoagent serve``."""

from __future__ import annotations

from pydantic import Field

from retrieval_service.core.media_settings import MediaLimits, MediaSettings


class ServiceSettings(MediaSettings):
    """Limits and access of the HTTP service (each field is a ``GEOAGENT_<NAME>`` variable); the media
    limits (``GEOAGENT_MAX_IMAGE_PIXELS``...) apply to its photos as to every other input."""

    service_api_key: str | None = Field(
        default=None, description="When set, every /v1 request must send it (Authorization: Bearer, or X-API-Key)."
    )
    service_max_upload_mb: float = Field(default=20.0, gt=0, le=1024, description="Largest request body accepted.")
    service_timeout_s: float = Field(
        default=300.0,
        gt=0,
        description="A request's deadline, waiting in the queue included; its work is then stopped at the next step (504).",
    )
    service_max_concurrency: int = Field(
        default=4, ge=1, le=256, description="Retrieval requests (search, embed, verify, conversation reads) worked on at once."
    )
    service_max_queue: int = Field(
        default=64, ge=0, le=10_000, description="Retrieval requests waiting for a slot; more are refused with 503 at once."
    )
    service_agent_max_concurrency: int = Field(
        default=2, ge=1, le=256, description="Agent runs (locate, its stream, follow-up questions) worked on at once."
    )
    service_agent_max_queue: int = Field(
        default=16, ge=0, le=10_000, description="Agent runs waiting for a slot; more are refused with 503 at once."
    )
    service_allow_private_urls: bool = Field(
        default=False, description="Let URL inputs reach loopback, private and link-local addresses."
    )

    @property
    def max_upload_bytes(self) -> int:
        return int(self.service_max_upload_mb * 1024 * 1024)

    @property
    def media_limits(self) -> MediaLimits:
        return MediaLimits.model_validate(self.model_dump(include=set(MediaLimits.model_fields)))
