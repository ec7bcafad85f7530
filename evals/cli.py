"""`geoagent eval` (being written)."""

import typer

app = typer.Typer(help="Benchmark evaluation (being written).")
