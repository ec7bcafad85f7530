"""Is the model hub reachable? A quick check so that offline runs fail in seconds, not minutes."""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout_s: float = 3.0) -> bool:
    """True when the Hugging Face hub answers within ``timeout_s`` (and HF_HUB_OFFLINE is not set).

    Cached for the process: one failed check is enough to know that downloads will not work.
    """
    import httpx
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    try:
        httpx.head(constants.ENDPOINT, timeout=timeout_s)
        return True
    except httpx.HTTPError:
        return False
