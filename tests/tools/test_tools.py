"""The seven LangChain tools: contract, results on real data, and readable errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import tools
from tests.tools.conftest import FakeRetriever, draw_text, shot
from tools import TOOL_NAMES, Services, make_tools

IMAGE_TOOLS = ("read_exif", "retrieve", "read_text", "segment_scene", "verify_locations")


def _ok(result: Any) -> dict:
    assert isinstance(result, dict), result
    assert "error" not in result, result
    json.dumps(result)
    return result


def _err(result: Any) -> str:
    assert isinstance(result, dict) and set(result) == {"error"}, result
    assert isinstance(result["error"], str) and len(result["error"]) > 10
    return result["error"]


def test_names_order_and_schemas(tools_by_name):
    assert tuple(tools_by_name) == TOOL_NAMES
    for name, tool in tools_by_name.items():
        assert tool.description and len(tool.description) > 80, name
        if name in IMAGE_TOOLS:  # the photo comes with the injected runtime: in the tool's own schema, never in the model's
            assert "runtime" in tool.get_input_schema().model_fields
        properties = tool.tool_call_schema.model_json_schema().get("properties", {})
        assert "runtime" not in properties and "image" not in properties, name
    assert set(tools_by_name["reverse_geocode"].args) == {"lat", "lon"}
    assert "candidates" in tools_by_name["cluster_candidates"].args


def test_all_tools_is_lazy_and_uses_settings(monkeypatch, tiny_env):
    monkeypatch.setattr(tools, "_ALL_TOOLS", None)
    all_tools = tools.ALL_TOOLS
    assert [t.name for t in all_tools] == list(TOOL_NAMES)
    assert tools.ALL_TOOLS is all_tools
    with pytest.raises(AttributeError):
        _ = tools.NOT_A_TOOL


def test_read_exif(tools_by_name, exif_dir: Path, dev_photo: Path):
    res = _ok(tools_by_name["read_exif"].invoke({**shot(exif_dir / "FujiFilm_FinePixS2Pro.jpg")}))
    assert res["gps"]["lat"] == pytest.approx(48.8578, abs=1e-4) and res["gps"]["lon"] == pytest.approx(2.297, abs=1e-4)
    assert "short-circuits" in res["note"]
    res = _ok(tools_by_name["read_exif"].invoke({**shot(dev_photo)}))
    assert res["gps"] is None and "no GPS" in res["note"]


def test_reverse_geocode(tools_by_name):
    res = _ok(tools_by_name["reverse_geocode"].invoke({"lat": 48.8584, "lon": 2.2945}))
    assert res["country"] == "France" and res["country_code"] == "FR" and res["remote"] is False
    assert 0 < res["distance_km"] < 10
    res = _ok(tools_by_name["reverse_geocode"].invoke({"lat": 30.0, "lon": -40.0}))
    assert res["distance_km"] > 300 and res["remote"] is True


def test_cluster_candidates(tools_by_name):
    cands = [
        {"lat": 48.85, "lon": 2.35, "score": 0.3},
        {"lat": 48.86, "lon": 2.30, "score": 0.2},
        {"lat": 40.7, "lon": -74.0, "score": 0.25},
    ]
    res = _ok(tools_by_name["cluster_candidates"].invoke({"candidates": cands}))
    assert res["best"]["support"] == 2 and res["best"]["lat"] == pytest.approx(48.85, abs=0.02)
    assert res["noise"] == 1 and len(res["clusters"]) == 1
    assert res["reranked"][-1]["lon"] == -74.0
    many = [{"lat": 10 + i, "lon": 10, "score": 0.5} for i in range(40)]
    res = _ok(tools_by_name["cluster_candidates"].invoke({"candidates": many, "eps_km": 200}))
    assert len(res["reranked"]) == 10 and len(json.dumps(res)) < 2500


def test_segment_scene(tools_by_name, cityscapes_dir: Path):
    res = _ok(tools_by_name["segment_scene"].invoke({**shot(cityscapes_dir / "cityscapes_segmentation.bmp")}))
    assert res["backend"] == "tflite"
    assert max(res["shares"], key=res["shares"].get) == "road"
    assert res["hints"]


def test_read_text(tools_by_name, tmp_path: Path):
    path = draw_text(tmp_path / "sign.jpg", ["Rue de Rivoli, Paris"])
    res = _ok(tools_by_name["read_text"].invoke({**shot(path)}))
    assert any("Paris" in line["text"] for line in res["lines"])
    assert res["scripts"] == ["Latin"] and res["script_regions"] == {}
    assert res["places"][0]["country_code"] == "FR"


def test_retrieve_with_and_without_filter(tools_by_name, fake_retriever: FakeRetriever, dev_photo: Path):
    res = _ok(tools_by_name["retrieve"].invoke({**shot(dev_photo), "k": 5}))
    assert len(res["gallery"]) == 5 and res["gallery"][0]["country_code"] == "FR"
    assert res["database"][0]["id"] == "img0" and res["dissimilar"] == [] and res["filter"] is None
    assert fake_retriever.calls[-1][1]["k_gallery"] == 5
    res = _ok(tools_by_name["retrieve"].invoke({**shot(dev_photo), "lat": 48.9, "lon": 2.3, "radius_km": 300, "dissimilar": 2}))
    assert res["filter"] == {"lat": 48.9, "lon": 2.3, "radius_km": 300}
    assert len(res["dissimilar"]) == 2
    assert fake_retriever.calls[-1][1]["geo_filter"].kind == "circle"
    res = _ok(tools_by_name["retrieve"].invoke({**shot(dev_photo), "country_code": "fr"}))
    assert res["filter"] == {"country_code": "FR"}


def test_top_k_has_one_default_the_setting(tools_by_name, fake_retriever: FakeRetriever, tool_settings, dev_photo: Path):
    """The retrieve tool's k, like the Retriever's, defaults to the one top_k setting."""
    from tools.retrieve import RetrieveArgs

    assert RetrieveArgs.model_fields["k"].default is None
    res = _ok(tools_by_name["retrieve"].invoke({**shot(dev_photo)}))
    assert fake_retriever.calls[-1][1]["k_gallery"] == tool_settings.top_k == len(res["gallery"]) == 20


def test_verify_locations(tools_by_name, dev_photo: Path):
    cands = [{"lat": 40.7, "lon": -74.0}, {"lat": 48.86, "lon": 2.35}, {"lat": 45.0, "lon": 5.0}]
    res = _ok(tools_by_name["verify_locations"].invoke({**shot(dev_photo), "candidates": cands}))
    ranked = res["ranked"]
    assert [(c["lat"], c["lon"]) for c in ranked] == [(48.86, 2.35), (45.0, 5.0), (40.7, -74.0)]
    assert ranked[0]["score"] > ranked[1]["score"] > ranked[2]["score"]


@pytest.mark.parametrize("name", IMAGE_TOOLS)
def test_a_photo_tool_without_a_photo_says_how_to_call_it(tools_by_name, name):
    """The photo is resolved once, before any tool runs (missing files and non-images fail there,
    see the media tests); a tool called with a runtime that carries no photo says so."""
    from tools.common import photo_runtime

    args: dict[str, Any] = {"runtime": photo_runtime(None)}  # type: ignore[arg-type]
    if name == "verify_locations":
        args["candidates"] = [{"lat": 1, "lon": 2}]
    message = _err(tools_by_name[name].invoke(args))
    assert "without a photo" in message and "photo_runtime" in message


@pytest.mark.parametrize(
    ("name", "args", "fragment"),
    [
        ("read_exif", {}, "runtime"),
        ("reverse_geocode", {"lat": 91, "lon": 0}, "lat"),
        ("reverse_geocode", {"lat": "north", "lon": 0}, "lat"),
        ("reverse_geocode", {"lon": 0}, "lat"),
        ("cluster_candidates", {"candidates": []}, "candidates"),
        ("cluster_candidates", {"candidates": [{"lat": 0}]}, "lon"),
        ("cluster_candidates", {"candidates": [{"lat": 0, "lon": 0}], "eps_km": -5}, "eps_km"),
        ("cluster_candidates", {"candidates": "Paris"}, "candidates"),
        ("retrieve", {"image": "x.jpg", "k": 0}, "k"),
        ("retrieve", {"image": "x.jpg", "lat": 10}, "circle filter needs lat, lon and radius_km"),
        ("retrieve", {"image": "x.jpg", "country_code": "FR", "min_lat": 1}, "exactly one geo filter"),
        ("retrieve", {"image": "x.jpg", "country_code": "France"}, "country_code"),
        ("verify_locations", {"image": "x.jpg", "candidates": []}, "candidates"),
        ("verify_locations", {"image": "x.jpg", "candidates": [{"lat": 0, "lon": 500}]}, "lon"),
        ("segment_scene", {"picture": "x.jpg"}, "runtime"),
        ("read_text", {"runtime": 42}, "runtime"),
    ],
)
def test_invalid_arguments_come_back_as_errors(tools_by_name, name, args, fragment, dev_photo: Path):
    if args.get("image") == "x.jpg":
        args = {**{k: v for k, v in args.items() if k != "image"}, **shot(dev_photo)}  # only the other argument is wrong
    message = _err(tools_by_name[name].invoke(args))
    assert fragment in message


def test_tool_call_message_carries_the_error(tools_by_name):
    msg = tools_by_name["reverse_geocode"].invoke(
        {"name": "reverse_geocode", "args": {"lat": "abc", "lon": 1}, "id": "call-1", "type": "tool_call"}
    )
    assert msg.status == "error" and "invalid arguments for reverse_geocode" in msg.content


def test_failures_inside_back_ends_become_errors(tool_settings, dev_photo: Path):
    class Broken:
        def search(self, *a: Any, **k: Any) -> Any:
            raise RuntimeError("qdrant went away")

        def verify(self, *a: Any, **k: Any) -> Any:
            return [0.1]  # wrong length

    by_name = {t.name: t for t in make_tools(Services(tool_settings, retriever=Broken()))}
    assert "qdrant went away" in _err(by_name["retrieve"].invoke({**shot(dev_photo)}))
    two = [{"lat": 1, "lon": 1}, {"lat": 2, "lon": 2}]
    assert "2 candidates" in _err(by_name["verify_locations"].invoke({**shot(dev_photo), "candidates": two}))


def test_segmentation_unavailable_says_how_to_enable(tool_settings, dev_photo: Path):
    settings = tool_settings.model_copy(update={"segmenter": "none"})
    seg = {t.name: t for t in make_tools(Services(settings))}["segment_scene"]
    message = _err(seg.invoke({**shot(dev_photo)}))
    assert "disabled" in message and "GEOAGENT_SEGMENTER" in message


@pytest.mark.parametrize("bad", ["Paris", 42, None, [1, 2]])
def test_non_dict_input_is_an_error(tools_by_name, bad):
    assert "invalid arguments for reverse_geocode" in _err(tools_by_name["reverse_geocode"].invoke(bad))
