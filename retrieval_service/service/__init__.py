"""The HTTP face of retrieval: the FastAPI app (``app.create_retrieval_app``), its limits and
structured errors, and ``RetrievalClient``, a client with the ``Retriever``'s interface.

``geoagent serve`` (agent layer) mounts the agent's endpoints onto the same app; this package knows
nothing of the agent. Importing it is light (FastAPI and httpx load on use).
"""

from __future__ import annotations

from retrieval_service.service.settings import ServiceSettings

__all__ = ["ServiceSettings"]
