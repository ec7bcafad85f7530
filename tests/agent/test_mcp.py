"""`geoagent mcp` driven by the official MCP SDK's own client: over stdio, list the tools, locate a
dev photo and read the EXIF of an EXIF photo; over streamable HTTP on loopback, the same server
answers once it says where it listens. Before, geoagent could not be used from an MCP client."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import anyio
import pytest

from agent.cli import main
from tests.waiting import GUARD_S, wait_for
from tools import TOOL_NAMES

TOOLS = {"locate", *TOOL_NAMES}


def _env() -> dict[str, str]:
    return {**os.environ, "GEOAGENT_SEGMENTER": "none", "PYTHONUNBUFFERED": "1"}


@pytest.mark.slow
def test_an_mcp_client_lists_the_tools_locates_a_photo_and_reads_exif(gallery_env, dev_images, exif_dir):
    from mcp.client import Client
    from mcp.client.stdio import StdioServerParameters

    photo = sorted(dev_images.glob("*.jpg"))[0]
    server = StdioServerParameters(command=sys.executable, args=["-m", "agent.cli", "mcp"], env=_env())

    async def session() -> dict:
        out: dict = {}
        with anyio.fail_after(GUARD_S):
            async with Client(server) as client:
                listed = await client.list_tools()
                out["tools"] = {t.name: t for t in listed.tools}
                out["locate"] = await client.call_tool("locate", {"image": str(photo)})
                out["exif"] = await client.call_tool("read_exif", {"image": str(exif_dir / "HTC_Desire.jpg")})
                out["missing"] = await client.call_tool("read_exif", {"image": str(dev_images / "no-such.jpg")})
                out["geocode"] = await client.call_tool("reverse_geocode", {"lat": 45.5007, "lon": 9.1103})
        return out

    out = anyio.run(session)
    assert set(out["tools"]) == TOOLS
    assert "image" in out["tools"]["read_exif"].input_schema["required"]
    assert "image" not in out["tools"]["reverse_geocode"].input_schema["properties"]  # not a photo tool
    assert "runtime" not in str(out["tools"]["retrieve"].input_schema)  # the injected argument stays hidden

    located = out["locate"]
    assert not located.is_error, located.content
    answer = located.structured_content
    assert -90 <= answer["lat"] <= 90 and -180 <= answer["lon"] <= 180 and answer["image"] == str(photo)
    assert set(answer["probabilities"]) == {"1", "25", "200", "750", "2500"} and set(answer["search_area_km2"]) == {"50", "90"}
    assert answer["place"] and "surface" not in answer and "model" not in answer and answer["trace"]

    exif = out["exif"]
    assert not exif.is_error and exif.structured_content["gps"] == {"lat": 45.50067, "lon": 9.11033, "altitude_m": 217.0}
    assert exif.structured_content["camera"] == "HTC HTC Desire"

    missing = out["missing"]
    assert missing.is_error and "no-such.jpg" in missing.content[0].text and "fix:" in missing.content[0].text
    assert out["geocode"].structured_content["country_code"] == "IT"


@pytest.mark.slow
def test_the_mcp_server_over_streamable_http_on_loopback(tiny_env, exif_dir):
    from mcp.client import Client

    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "mcp", "--http", "--port", "0"],
        env=_env(),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []

    def announced() -> str | None:
        line = proc.stderr.readline() if proc.stderr else ""
        lines.append(line)
        match = re.search(r"geoagent MCP server on (http://127\.0\.0\.1:\d+/mcp)", line)
        return match.group(1) if match else None

    try:
        url = wait_for(announced, "the server to say where it listens", proc=proc)

        async def session() -> tuple[set[str], dict]:
            with anyio.fail_after(GUARD_S):
                async with Client(url) as client:
                    names = {t.name for t in (await client.list_tools()).tools}
                    exif = await client.call_tool("read_exif", {"image": str(exif_dir / "FujiFilm_FinePixS2Pro.jpg")})
            return names, exif.structured_content

        names, exif = anyio.run(session)
        assert names == TOOLS
        assert exif["gps"]["lat"] == pytest.approx(48.85783, abs=1e-5) and exif["camera"] == "FUJIFILM FinePixS2Pro"
    finally:
        proc.terminate()
        proc.wait(timeout=GUARD_S)


def test_the_http_transport_listens_on_loopback_only(tiny_env, capsys):
    assert main(["mcp", "--http", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "loopback only" in err and "fix:" in err
