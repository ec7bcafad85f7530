"""The chat-model factory: an OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp server,
DashScope) from the agent's settings."""

from __future__ import annotations

from typing import Any

from agent.settings import AgentSettings
from retrieval_service.core.errors import ConfigError


def make_chat_model(settings: AgentSettings) -> Any:
    """A ``ChatOpenAI`` for ``settings.llm_model`` at ``settings.llm_base_url`` (any OpenAI-compatible
    endpoint: OpenAI, vLLM, Ollama, llama.cpp server, DashScope).

    The client's own retries are off: :func:`invoke_with_retries` retries with backoff so that each
    attempt shows in the trace.
    """
    if not settings.llm_model:
        raise ConfigError("no LMM is configured", "set GEOAGENT_LLM_MODEL (and GEOAGENT_LLM_BASE_URL for a local server)")
    from langchain_openai import ChatOpenAI

    api_key = settings.llm_api_key
    if api_key is None and settings.llm_base_url is None:
        raise ConfigError(
            "GEOAGENT_LLM_MODEL is set for the OpenAI API but no API key is configured",
            "set GEOAGENT_LLM_API_KEY, or GEOAGENT_LLM_BASE_URL for a local OpenAI-compatible server",
        )
    return ChatOpenAI(
        model=settings.llm_model,
        base_url=settings.llm_base_url,
        api_key=api_key or "not-needed",  # local servers ignore the key but the client wants one
        timeout=settings.llm_timeout_s,
        max_retries=0,
        temperature=settings.llm_temperature,
    )
