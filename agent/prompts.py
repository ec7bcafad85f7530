"""Prompt templates, stored as text files in the ``prompts`` package and loaded by name.

A template may open with note lines starting with ``#`` (where the prompt comes from: G3,
Img2Loc...); they are for the reader of the file and never sent to a model."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from retrieval_service.core.errors import ConfigError


def strip_notes(text: str) -> str:
    """The template without its leading ``#`` note lines."""
    lines = text.splitlines(keepends=True)
    start = 0
    while start < len(lines) and lines[start].startswith("#"):
        start += 1
    return "".join(lines[start:])


@cache
def load_prompt(name: str) -> str:
    """The text of ``prompts/<name>.txt`` (its ``#`` note lines left out)."""
    return strip_notes(_read(name))


def _read(name: str) -> str:
    filename = f"{name}.txt"
    try:
        return resources.files("prompts").joinpath(filename).read_text(encoding="utf-8")
    except FileNotFoundError:
        pass
    except NotADirectoryError:
        # Python 3.11 + editable installs: the namespace path holds a finder hook entry that
        # importlib.resources cannot multiplex; read from the real folders on the path instead.
        import prompts

        for folder in prompts.__path__:
            path = Path(folder) / filename
            if path.is_file():
                return path.read_text(encoding="utf-8")
    raise ConfigError(f"prompt template {name!r} is missing", "reinstall geoagent (prompts/*.txt)")


def render(name: str, **values: Any) -> str:
    """Fill a template's ``{placeholders}`` (literal braces are doubled in the files)."""
    return load_prompt(name).format(**values).strip()
