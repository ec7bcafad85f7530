"""The chat-model factory, in the style of LangChain's ``init_chat_model``: ``provider:model`` names
pick the integration; without a prefix ``llm_provider`` does (default ``openai``: any
OpenAI-compatible endpoint: OpenAI, vLLM, Ollama, llama.cpp server, DashScope Qwen-VL).

Other providers work when their LangChain package is installed (``pip install langchain-anthropic``
...); a missing package is a ConfigError naming it. The clients' own retries are switched off:
``agent.lmm.calls`` retries, so that every request passes the circuit breaker and the per-photo
limits and shows in the trace. Token usage is requested on streamed replies too.
"""

from __future__ import annotations

import importlib
from typing import Any

from agent.settings import AgentSettings
from retrieval_service.core.errors import ConfigError

# provider -> (module, class, package to install, keyword of the model name, keyword of the base URL)
PROVIDERS: dict[str, tuple[str, str, str, str, str | None]] = {
    "openai": ("langchain_openai", "ChatOpenAI", "langchain-openai", "model", "base_url"),
    "azure_openai": ("langchain_openai", "AzureChatOpenAI", "langchain-openai", "azure_deployment", "azure_endpoint"),
    "anthropic": ("langchain_anthropic", "ChatAnthropic", "langchain-anthropic", "model", "base_url"),
    "ollama": ("langchain_ollama", "ChatOllama", "langchain-ollama", "model", "base_url"),
    "google_genai": ("langchain_google_genai", "ChatGoogleGenerativeAI", "langchain-google-genai", "model", None),
    "mistralai": ("langchain_mistralai", "ChatMistralAI", "langchain-mistralai", "model", "endpoint"),
    "groq": ("langchain_groq", "ChatGroq", "langchain-groq", "model", "base_url"),
}


def split_model_name(name: str, default_provider: str) -> tuple[str, str]:
    """``"anthropic:claude-x"`` -> ("anthropic", "claude-x"); a name without a known prefix keeps the default."""
    prefix, sep, rest = name.partition(":")
    if sep and prefix.strip().lower() in PROVIDERS and rest.strip():
        return prefix.strip().lower(), rest.strip()
    return default_provider.strip().lower(), name


def make_chat_model(settings: AgentSettings, **overrides: Any) -> Any:
    """The chat model of ``settings`` (``llm_model``, ``llm_provider``, base URL, key, timeout,
    temperature); ``overrides`` go to the model class as keyword arguments."""
    if not settings.llm_model:
        raise ConfigError("no LMM is configured", "set GEOAGENT_LLM_MODEL (and GEOAGENT_LLM_BASE_URL for a local server)")
    provider, model = split_model_name(settings.llm_model, settings.llm_provider)
    if provider not in PROVIDERS:
        raise ConfigError(
            f"unknown LMM provider {provider!r}",
            f"set GEOAGENT_LLM_PROVIDER to one of: {', '.join(PROVIDERS)} (openai = any OpenAI-compatible endpoint)",
        )
    module_name, class_name, package, model_kw, url_kw = PROVIDERS[provider]
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except ImportError as exc:
        raise ConfigError(f"the LMM provider {provider!r} needs the package {package}", f"pip install {package}") from exc
    kwargs: dict[str, Any] = {
        model_kw: model,
        "temperature": settings.llm_temperature,
        "timeout": settings.llm_timeout_s,
        "max_retries": 0,
    }
    if provider == "openai":
        if settings.llm_api_key is None and settings.llm_base_url is None:
            raise ConfigError(
                "GEOAGENT_LLM_MODEL is set for the OpenAI API but no API key is configured",
                "set GEOAGENT_LLM_API_KEY, or GEOAGENT_LLM_BASE_URL for a local OpenAI-compatible server",
            )
        kwargs["api_key"] = settings.llm_api_key or "not-needed"  # local servers ignore the key; the client wants one
        kwargs["stream_usage"] = True  # keep token usage when the reply is streamed
    elif settings.llm_api_key is not None:
        kwargs["api_key"] = settings.llm_api_key
    if provider == "ollama":  # ChatOllama has neither timeout nor retries as fields
        kwargs.pop("timeout")
        kwargs.pop("max_retries")
        kwargs["client_kwargs"] = {"timeout": settings.llm_timeout_s}
    if settings.llm_base_url and url_kw:
        kwargs[url_kw] = settings.llm_base_url
    return cls(**{**kwargs, **overrides})
