"""What every tool shares: building a StructuredTool that never raises into the graph, image-path
checks and loading, rounding."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool
from PIL import Image
from pydantic import BaseModel, ValidationError

from retrieval_service.errors import GeoAgentError, ImageLoadError
from retrieval_service.images import is_url, load_image

logger = logging.getLogger(__name__)

IMAGE_DESCRIPTION = "Path (or http(s) URL) of the photo being geolocated."


def error_result(message: str) -> dict[str, str]:
    return {"error": message}


def _validation_message(tool_name: str) -> Callable[[ValidationError], dict[str, str]]:
    def handle(exc: ValidationError) -> dict[str, str]:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ())) or 'arguments'}: {err.get('msg', 'invalid')}"
            for err in exc.errors()
        )
        return error_result(f"invalid arguments for {tool_name}: {problems}. Fix the arguments and call again.")

    return handle


def build_tool(
    name: str, func: Callable[..., dict[str, Any]], args_schema: type[BaseModel], description: str
) -> BaseTool:
    """A StructuredTool whose failures (bad arguments included) come back as ``{"error": ...}``."""

    @functools.wraps(func)
    def safe(**kwargs: Any) -> dict[str, Any]:
        try:
            return func(**kwargs)
        except GeoAgentError as exc:
            logger.info("tool %s failed: %s", name, exc.message)
            return error_result(f"{exc.message}" + (f" (fix: {exc.hint})" if exc.hint else ""))
        except ValidationError as exc:
            return _validation_message(name)(exc)
        except Exception as exc:  # a tool must never raise into the graph
            logger.exception("tool %s crashed", name)
            return error_result(f"{name} failed: {type(exc).__name__}: {exc}")

    return StructuredTool.from_function(
        func=safe,
        name=name,
        description=description,
        args_schema=args_schema,
        handle_validation_error=_validation_message(name),  # type: ignore[arg-type]
    )


def check_image(ref: str) -> str:
    """The image reference, after checking that a local file exists (URLs pass through)."""
    ref = ref.strip()
    if not ref:
        raise ImageLoadError("no image given", "pass the path of the photo as 'image'")
    if not is_url(ref) and not Path(ref).expanduser().is_file():
        raise ImageLoadError(
            f"image file not found: {ref}", "pass the path of an existing image file (the one being geolocated)"
        )
    return ref if is_url(ref) else str(Path(ref).expanduser())


def open_image(ref: str) -> Image.Image:
    """Load the photo as RGB with EXIF orientation applied (``retrieval_service.images.load_image``)."""
    return load_image(check_image(ref))


def r(value: float, digits: int = 3) -> float:
    return round(float(value), digits)
