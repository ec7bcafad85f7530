"""The photo as the LMM sees it: a langchain-core image content block (downscaled JPEG, base64).

Blocks are cached per file (path, size and modification time) so that a run that calls the model
many times encodes the photo once.
"""

from __future__ import annotations

import base64
import io
import os
from functools import lru_cache
from typing import Any

from PIL import Image

from retrieval_service.core.media import is_url, load_image

MAX_SIDE = 1024
JPEG_QUALITY = 90


@lru_cache(maxsize=16)
def _encoded(src: str, _stamp: tuple[int, int] | None, max_side: int, quality: int) -> str:
    img = load_image(src)
    if max(img.size) > max_side:
        img = img.copy()
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def image_content_block(src: str, max_side: int = MAX_SIDE, quality: int = JPEG_QUALITY) -> dict[str, Any]:
    """The photo at ``src`` (a local path or an http(s) URL), downscaled to ``max_side`` px, as a
    langchain-core image block."""
    stamp = None
    if not is_url(src):
        st = os.stat(src)
        stamp = (st.st_size, st.st_mtime_ns)
    return {"type": "image", "base64": _encoded(src, stamp, max_side, quality), "mime_type": "image/jpeg"}
