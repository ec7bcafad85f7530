"""The ``geoagent`` command line.

Sub-commands live in their own modules (``locate``, ``index``, ``chat``) and register themselves
on the root app; ``geoagent eval`` comes from the ``geoagent.commands`` entry-point group so that
the agent never imports the evaluation package.
"""

from __future__ import annotations

import logging
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated

import typer

from agent.cli import calibrate, chat, index, locate, mcp, models, serve, train
from agent.cli.context import CliState
from retrieval_service.core.errors import GeoAgentError

app = typer.Typer(
    name="geoagent",
    rich_markup_mode=None,  # plain help: no "<bool>" type column beside flags, readable when piped
    help=(
        "Where was this photo taken? geoagent retrieves candidate coordinates for a photo, "
        "clusters and verifies them with evidence tools (EXIF, OCR, scene segmentation, reverse "
        "geocoding) and commits to an answer with the reasons.\n\n"
        "Configuration comes from GEOAGENT_* environment variables or a TOML file (--config)."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def package_version() -> str:
    """The installed geoagent's version (from its package metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("geoagent")
    except PackageNotFoundError:
        return "unknown (geoagent is not installed; pip install -e .)"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"geoagent {package_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="FILE.toml",
            help="TOML settings file (keys as the GEOAGENT_* names, lower-case, without the prefix).",
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log output (-v info, -vv debug).")] = 0,
    version: Annotated[
        bool, typer.Option("--version", is_eager=True, callback=_print_version, help="Print geoagent's version and exit.")
    ] = False,
) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    ctx.obj = CliState(config=config, debug=debug)


locate.register(app)
index.register(app)
chat.register(app)
serve.register(app)
train.register(app)
models.register(app)
calibrate.register(app)
mcp.register(app)

for _ep in entry_points(group="geoagent.commands"):
    try:
        app.add_typer(_ep.load(), name=_ep.name)
    except Exception as _exc:  # a broken plugin must not take the whole CLI down
        logging.getLogger(__name__).warning("could not load the '%s' command: %s", _ep.name, _exc)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: user errors are one clear message on stderr, no traceback."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        # with standalone_mode=False click returns a command's typer.Exit code instead of raising it
        code = app(args=argv, standalone_mode=False)
    except GeoAgentError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc.message}", err=True)
        if exc.hint:
            typer.echo(f"  fix: {exc.hint}", err=True)
        return 2
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 1
    except Exception as exc:  # click usage errors and the unexpected
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            return exc.exit_code
        if debug:
            raise
        typer.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        typer.echo("  (run again with --debug for the full traceback)", err=True)
        return 1
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
