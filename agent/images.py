"""The photo on the agent side: its reference, the input the tools get, the LMM content block.

The graph state only ever holds the reference (a path, an URL or ``sha256:<hex>``). Photos given
as bytes or PIL images are written once, content-addressed, under ``settings.cache_dir/images`` so
that the tools (which take a path or URL) can read them.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from retrieval_service.errors import ImageLoadError

MAX_SIDE = 1024


def load_pil(src: Any) -> Image.Image:
    """Open any accepted image input as an RGB PIL image (ImageLoadError when it cannot be read)."""
    from retrieval_service.images import load_image

    return load_image(src)


def check_image_file(path: Path) -> None:
    """Fail early on a file that is not a complete image, cheaply: JPEGs are decoded at 1/8 scale."""
    try:
        with Image.open(path) as img:
            if img.format == "JPEG":
                img.draft("RGB", (max(1, img.width // 8), max(1, img.height // 8)))
            img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageLoadError(f"not a readable image: {path} ({exc})",
                             "pass a complete JPEG/PNG/WebP file (the file may be truncated or not an image)") from exc


def resolve_image(src: Any, cache_dir: Path) -> tuple[str, str]:
    """Return ``(reference, tool_input)`` for a photo; raise ImageLoadError when unusable.

    Paths and URLs are their own reference and tool input. Bytes and PIL images are referenced by
    the sha256 of their bytes and stored under ``cache_dir/images`` for the tools.
    """
    if isinstance(src, dict):
        raise ImageLoadError("the image input is a dict", 'pass {"image": <path|bytes|PIL image|url>}')
    if isinstance(src, (str, os.PathLike)):
        text = os.fspath(src)
        if not text.strip():
            raise ImageLoadError("the image path is empty", "pass a photo path or an http(s) URL")
        from retrieval_service.images import is_url

        if is_url(text):
            return text, text
        path = Path(text).expanduser()
        if not path.is_file():
            raise ImageLoadError(f"image not found: {text}", "check the path (a file, not a folder)")
        check_image_file(path)
        return str(path), str(path)
    if isinstance(src, Image.Image):
        buf = io.BytesIO()
        src.convert("RGB").save(buf, format="PNG")
        data, suffix = buf.getvalue(), ".png"
    elif isinstance(src, (bytes, bytearray)):
        data = bytes(src)
        if not data:
            raise ImageLoadError("the image bytes are empty", "pass the bytes of a JPEG/PNG file")
        img = load_pil(data)
        suffix = "." + (getattr(img, "format", None) or "img").lower()
    else:
        raise ImageLoadError(
            f"unsupported image input of type {type(src).__name__}",
            "pass a path, an http(s) URL, bytes or a PIL image",
        )
    digest = hashlib.sha256(data).hexdigest()
    folder = Path(cache_dir) / "images"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{digest}{suffix}"
    if not path.exists():
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return f"sha256:{digest}", str(path)


def image_content_block(src: Any, max_side: int = MAX_SIDE, quality: int = 90) -> dict[str, Any]:
    """A langchain-core image content block: the photo downscaled to ``max_side`` px, JPEG, base64."""
    img = load_pil(src)
    if max(img.size) > max_side:
        img = img.copy()
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return {
        "type": "image",
        "base64": base64.b64encode(buf.getvalue()).decode("ascii"),
        "mime_type": "image/jpeg",
    }
