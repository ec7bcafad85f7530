"""Request options and responses of the retrieval API (results reuse the core types:
``RetrievalResult`` for /v1/search, with every ``Candidate`` field)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from retrieval_service.core.types import GeoFilter, Location
from retrieval_service.retrieval.settings import MAX_TOP_K
from retrieval_service.service.admission import LaneStats
from retrieval_service.service.errors import invalid_arguments


class Options(BaseModel):
    """Base of the options a request carries beside its photo (multipart fields or JSON keys)."""

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def parse(cls, fields: dict[str, Any]) -> Options:
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            raise invalid_arguments(exc, "options") from exc


class SearchOptions(Options):
    k_gallery: int | None = Field(
        default=None, ge=0, le=MAX_TOP_K, description="GPS-gallery candidates (default: the service's top_k)."
    )
    k_database: int | None = Field(
        default=None,
        ge=0,
        le=MAX_TOP_K,
        description="Image-database neighbours, when a database is indexed (default: the service's top_k).",
    )
    dissimilar: int = Field(default=0, ge=0, le=MAX_TOP_K, description="Least similar neighbours (negative context).")
    filter: GeoFilter | None = Field(default=None, description="One geo filter: lat+lon+radius_km, a box, or country_code.")


class EmbedOptions(Options):
    space: Literal["clip", "gps"] = Field(
        default="clip", description="clip: the image encoder's features; gps: GeoCLIP's image head."
    )


class LocationsOptions(Options):
    locations: list[Location] = Field(min_length=1, max_length=MAX_TOP_K, description="Points [{lat, lon}].")


class EmbedResponse(BaseModel):
    space: Literal["clip", "gps", "location"]
    dim: int
    vectors: list[list[float]] = Field(description="One L2-normalised vector per photo or location, in order.")


class VerifyResponse(BaseModel):
    scores: list[float] = Field(description="Cosine similarity of the photo and each location, in the order given.")


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    lanes: dict[str, LaneStats] = Field(
        default_factory=dict, description="Admission by kind: each lane's limits, load and counters (retrieval, agent)."
    )


class Readiness(BaseModel):
    ready: bool
    detail: str = ""
    fix: str | None = None


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema with its ``$defs`` references replaced by the definitions (for openapi_extra)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(dict(defs[ref.rsplit("/", 1)[1]]))
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


def image_request_body(options: type[Options], *, many: bool = False, json_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """OpenAPI requestBody for an endpoint that takes a multipart upload or a JSON ``{"url": ...}``."""
    fields = _inline(options.model_json_schema())
    props = fields.get("properties", {})
    binary = {"type": "string", "format": "binary"}
    multipart = {
        "type": "object",
        "required": ["image"],
        "properties": {
            "image": {"type": "array", "items": binary} if many else binary,
            **{
                k: (
                    {"type": "string", "description": f"JSON text: {v.get('description', '')}"}
                    if k in ("filter", "locations")
                    else v
                )
                for k, v in props.items()
            },
        },
    }
    body = {
        "type": "object",
        "properties": {"url": {"type": "string", "format": "uri", "description": "An http(s) URL of the photo."}, **props},
    }
    if json_extra:
        body = {"anyOf": [body, json_extra]}
    return {
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": multipart}, "application/json": {"schema": body}},
        }
    }
