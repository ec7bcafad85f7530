"""The documentation stays true to the code: the settings reference is the generated one, the README
is a short front door that starts with the two set-up commands, and every relative link resolves."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
README_MAX_LINES = 160
SETUP_COMMANDS = (
    "pip install -c constraints.txt -e . && geoagent locate examples/kauai.jpg --map kauai.html",
    "pip install -c constraints.txt -e '.[test]' && python -m pytest -q",
)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|!\[[^\]]*\]\(([^)\s]+)\)")


def _generator():
    spec = importlib.util.spec_from_file_location("generate_settings", DOCS / "generate_settings.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_the_settings_reference_is_the_generated_one():
    ok, message = _generator().check(DOCS / "settings.md")
    assert ok, message


def test_the_check_fails_on_a_stale_reference(tmp_path):
    stale = tmp_path / "settings.md"
    stale.write_text((DOCS / "settings.md").read_text(encoding="utf-8").replace("GEOAGENT_TOP_K", "GEOAGENT_TOPK"))
    done = subprocess.run(
        [sys.executable, str(DOCS / "generate_settings.py"), "--check", "--output", str(stale)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "generate_settings.py" in done.stderr and "+| `GEOAGENT_TOP_K`" in done.stderr


def test_every_settings_field_is_in_the_reference():
    from evals.settings import EvalRunSettings
    from retrieval_service.fusion.settings import FusionSettings
    from retrieval_service.service.settings import ServiceSettings

    text = (DOCS / "settings.md").read_text(encoding="utf-8")
    for cls in (EvalRunSettings, FusionSettings, ServiceSettings):
        for name in cls.model_fields:
            assert f"| `GEOAGENT_{name.upper()}` |" in text, name


def test_the_reference_names_no_path_of_this_machine():
    text = (DOCS / "settings.md").read_text(encoding="utf-8")
    assert str(Path.home()) not in text and str(REPO) not in text


def test_the_readme_is_a_short_front_door_starting_with_the_two_commands():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move details into docs/"
    body = [line for line in lines if line.strip()]
    assert body[0] == "# geoagent"
    assert body[1] == "```bash", "the README starts with the set-up commands in one bash block"
    assert tuple(body[2:4]) == SETUP_COMMANDS
    assert body[4] == "```"


def _markdown_files() -> list[Path]:
    return [REPO / "README.md", *sorted(DOCS.glob("*.md"))]


def _without_code_blocks(text: str) -> str:
    return re.sub(r"```.*?```", "", text, flags=re.S)


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", _without_code_blocks(path.read_text(encoding="utf-8")), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_point_to_existing_files(path: Path):
    broken = []
    for match in LINK.finditer(_without_code_blocks(path.read_text(encoding="utf-8"))):
        target = match.group(1) or match.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
            continue  # http(s)://, mailto:
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part) if file_part else path
        missing_heading = anchor and linked.suffix == ".md" and linked.exists() and anchor not in _anchors(linked)
        if not linked.exists() or missing_heading:
            broken.append(target)
    assert broken == [], f"{path.name}: links to missing files or headings: {broken}"


def test_the_published_figures_in_the_benchmarks_match_the_csv():
    """docs/benchmarks.md quotes evals/data/published.csv; a changed figure must change both."""
    import csv

    names = {"im2gps3k": "IM2GPS3k", "yfcc4k": "YFCC4k"}
    text = (DOCS / "benchmarks.md").read_text(encoding="utf-8")
    rows = list(csv.DictReader((REPO / "evals" / "data" / "published.csv").read_text(encoding="utf-8").splitlines()))
    quoted = [r for r in rows if r["acc_1"].strip()]
    assert quoted
    for r in quoted:
        label = f"{r['method']} ({r['variant']})" if r["variant"] else r["method"]
        figures = " | ".join(r[f"acc_{t}"] for t in (1, 25, 200, 750, 2500))
        assert f"| {label} | {names[r['dataset']]} | {figures} |" in text, label
