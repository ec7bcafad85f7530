"""End to end with the real tools: EXIF photos, and the policy on real dev photos (tiny encoder +
the real GeoCLIP gallery) once the retriever is available."""

from __future__ import annotations

import csv

import pytest

from agent import load_agent

EXPECTED = {"FujiFilm_FinePixS2Pro.jpg": (48.8578, 2.2970, "FR"), "HTC_Desire.jpg": (45.5007, 9.1103, "IT")}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_policy_on_exif_photo_answers_exif_coordinates(exif_dir, tiny_settings, name):
    agent = load_agent(tiny_settings)
    assert agent.mode == "policy"
    pred = agent.invoke({"image": str(exif_dir / name)})
    lat, lon, cc = EXPECTED[name]
    assert (round(pred.lat, 4), round(pred.lon, 4)) == (lat, lon)
    assert pred.source == "exif" and pred.confidence > 0.9
    assert pred.place.country_code == cc
    assert [t.tool for t in pred.trace] == ["read_exif", "reverse_geocode"]  # no retrieval needed
    assert "EXIF" in pred.rationale


def test_exif_photo_as_bytes_and_pil(exif_dir, tiny_settings):
    from PIL import Image

    agent = load_agent(tiny_settings)
    data = (exif_dir / "HTC_Desire.jpg").read_bytes()
    pred = agent.invoke({"image": data})
    assert pred.image.startswith("sha256:") and pred.source == "exif" and round(pred.lat, 4) == 45.5007
    state, ctx, _ = agent._prepare(Image.open(exif_dir / "HTC_Desire.jpg"))
    assert state["photo"].ref.startswith("sha256:") and state["photo"].ref != pred.image and ctx.photo is state["photo"]
    assert ctx.photo.path.endswith(".png") and Image.open(ctx.photo.path).size == Image.open(exif_dir / "HTC_Desire.jpg").size


def test_unreadable_image_raises_image_load_error(tiny_settings, tmp_path, exif_dir):
    from retrieval_service.core.errors import ImageLoadError

    agent = load_agent(tiny_settings)
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"not a jpeg")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes((exif_dir / "HTC_Desire.jpg").read_bytes()[:20000])
    for src in (bad, truncated, tmp_path / "missing.jpg", tmp_path, b"", {"img": "x"}, 42):
        with pytest.raises(ImageLoadError):
            agent.invoke(src if isinstance(src, dict) else {"image": src})
    results = agent.batch([{"image": str(tmp_path / "missing.jpg")}])
    assert isinstance(results[0], ImageLoadError)


@pytest.fixture()
def real_settings(gallery_settings, cityscapes_dir):
    """The gallery settings with the real Cityscapes TFLite segmenter (no model-hub access)."""
    return gallery_settings.model_copy(
        update={
            "segmenter": "tflite",
            "segmenter_model": str(cityscapes_dir / "deeplab_mobilenet_edgetpu_slim_cityscapes_quant.tflite"),
            "segmenter_labels": str(cityscapes_dir / "labels.txt"),
        }
    )


def test_policy_end_to_end_on_dev_photos(dev_images, dev_labels, real_settings):
    """Tiny random encoder + the real 100K GeoCLIP gallery: the plumbing and the decision rule."""
    gallery_settings = real_settings
    with open(dev_labels) as fh:
        rows = list(csv.DictReader(fh))[:2]
    agent = load_agent(gallery_settings, mode="policy")
    for row in rows:
        pred = agent.invoke({"image": str(dev_images / row["IMG_ID"])})
        tools = [t.tool for t in pred.trace]
        assert tools[:3] == ["read_exif", "retrieve", "cluster_candidates"], tools
        assert {"reverse_geocode", "read_text", "segment_scene", "verify_locations"} <= set(tools)
        assert not [t for t in pred.trace if t.error and t.tool in ("retrieve", "cluster_candidates", "verify_locations")]
        assert len([c for c in pred.candidates if c.source == "gallery"]) == gallery_settings.top_k
        assert pred.source in ("cluster", "gallery", "database", "ocr") and 0 < pred.confidence <= 0.95
        assert "retrieval returned" in pred.rationale.lower() and pred.place.country
        # the answer is one of the weighed options: a cluster centre, a candidate or an OCR place
        spots = [(c.lat, c.lon) for c in pred.candidates] + [(c.lat, c.lon) for c in pred.clusters]
        assert any(abs(a - pred.lat) < 1e-6 and abs(b - pred.lon) < 1e-6 for a, b in spots)
    for mode in ("retrieval", "rerank"):
        pred = load_agent(gallery_settings, mode=mode).invoke({"image": str(dev_images / rows[0]["IMG_ID"])})
        steps = ["retrieve", "reverse_geocode"] if mode == "retrieval" else ["retrieve", "cluster_candidates", "reverse_geocode"]
        assert pred.mode == mode and [t.tool for t in pred.trace] == steps
        if mode == "retrieval":
            top = max((c for c in pred.candidates if c.source == "gallery"), key=lambda c: c.probability)
            assert (pred.lat, pred.lon) == (top.lat, top.lon)
        assert pred.confidence == pred.probabilities["25"] and set(pred.search_area_km2) == {"50", "90"}


def test_scripted_lmm_drives_the_real_tools(dev_images, real_settings):
    """The LMM loop against the real tools: zoom-in retrieve, verify, a bad call, then the answer."""

    from langchain_core.messages import AIMessage, ToolMessage

    from tests.agent.fakes import ScriptedChatModel, call, submit

    final = {"lat": 45.0, "lon": 7.0, "confidence": 0.3, "rationale": "zoomed retrieval and verification"}
    model = ScriptedChatModel(
        script=[
            AIMessage(
                "",
                tool_calls=[
                    call("retrieve", {"image": "photo", "k": 5, "lat": 45.0, "lon": 7.0, "radius_km": 300}, "r1"),
                    call("verify_locations", {"image": "photo", "candidates": [{"lat": 45.0, "lon": 7.0}]}, "v1"),
                ],
            ),
            AIMessage("", tool_calls=[call("retrieve", {"image": "photo", "radius_km": -5}, "r2")]),
            submit(final),
        ]
    )
    agent = load_agent(real_settings, mode="agent", chat_model=model, retry_backoff_s=0.001)
    photo = sorted(dev_images.glob("*.jpg"))[0]
    pred = agent.invoke({"image": str(photo)})
    assert (pred.lat, pred.lon, pred.source) == (45.0, 7.0, "lmm") and model.remaining == 0
    zoom = next(t for t in pred.trace if t.tool == "retrieve" and t.args.get("radius_km") == 300)
    assert zoom.error is None and "filter" in zoom.summary
    zoomed = [c for c in pred.candidates if abs(c.lat - 45.0) < 3 and abs(c.lon - 7.0) < 4]
    assert len(zoomed) >= 5  # the zoomed-in candidates lie inside the circle and reached the state
    bad = [m for m in model.received[2] if isinstance(m, ToolMessage)][-1]
    assert "error" in bad.content.lower() and [t for t in pred.trace if t.tool == "retrieve"][-1].error
    assert pred.place.country  # reverse geocoded
    # the real tools' schemas as the model saw them carry no image parameter; the photo was injected
    for schema in model.schemas[0]:
        assert "image" not in schema["function"]["parameters"].get("properties", {}), schema["function"]["name"]
    assert all(t.args.get("image") in (None, str(photo)) for t in pred.trace if t.tool in ("retrieve", "verify_locations"))
