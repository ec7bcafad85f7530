"""End to end with the tiny random CLIP and generated images (no benchmark photo): precompute
(bad CSV rows and missing images counted), train with the CLI, index and search with
``--encoder fusion:PATH`` / ``GEOAGENT_ENCODER``, collections kept apart per encoder, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agent.cli import main
from retrieval_service.core.errors import ConfigError, DatasetError, ModelMismatchError, WeightsNotFoundError
from retrieval_service.core.photo import Photo
from retrieval_service.fusion.features import FeatureSet
from tests.conftest import shared_path

TINY = [
    "--dim",
    "16",
    "--embed-dim",
    "16",
    "--heads",
    "2",
    "--layers",
    "1",
    "--batch-size",
    "4",
    "--epochs",
    "2",
    "--warmup-steps",
    "1",
    "--val-fraction",
    "0.2",
    "--val-gallery",
    "train",
    "--checkpoint-every",
    "2",
    "--log-every",
    "1",
]


@pytest.fixture()
def photo_set(tmp_path: Path) -> tuple[Path, Path]:
    """12 generated photos (colour by hemisphere), a missing image and a row with bad coordinates."""
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    lines = ["IMG_ID,AUTHOR,LAT,LON,city,country"]
    for i in range(12):
        lat, lon = float(rng.uniform(-60, 60)), float(rng.uniform(-170, 170))
        colour = (200, 60, 40) if lat > 0 else (40, 80, 200)
        pixels = np.clip(np.array(colour) + rng.normal(0, 20, (64, 64, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(images / f"p{i}.png")
        lines.append(f"p{i}.png,u{i % 3},{lat:.4f},{lon:.4f},Town{i},Land{i % 2}")
    lines += ["missing.png,u1,10.0,10.0,X,Y", "p0.png,u1,95.0,10.0,X,Y"]
    csv = tmp_path / "photos.csv"
    csv.write_text("\n".join(lines) + "\n")
    return csv, images


def run(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_fusion_cli_precompute_train_index_search(tiny_env, tiny_settings, photo_set, tmp_path, capsys, monkeypatch) -> None:
    csv, images = photo_set
    feats, run_dir = tmp_path / "features", tmp_path / "run"
    precompute = ["train", "precompute", str(csv), "--images", str(images), "--out", str(feats), "--no-segmentation"]
    precompute += ["--token-grid", "2", "--shard-size", "16", "--json"]
    code, out, err = run(
        precompute,
        capsys,
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["rows"] == 13 and report["unreadable"] == 1  # the 95-degree row is dropped, missing.png counted
    fs = FeatureSet(feats)
    assert fs.column("ok").sum() == 12 and fs.take(np.array([0]), ("tokens",))["tokens"].shape == (1, 4, 768)
    code, out, err = run(
        precompute,
        capsys,
    )
    assert code == 0, err
    assert json.loads(out)["shards_reused"] == 1  # resumed: nothing recomputed

    code, out, err = run(["train", "fusion", str(feats), "--out", str(run_dir), "--no-segmentation", *TINY, "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["steps"] > 0 and (run_dir / "fusion.pt").is_file() and (run_dir / "state.pt").is_file()
    code, out, _ = run(["train", "fusion", str(feats), "--out", str(run_dir), "--no-segmentation", *TINY, "--json"], capsys)
    assert json.loads(out)["resumed_from_step"] == result["steps"]  # nothing left to do: resumed at the end

    gallery = tmp_path / "gallery.csv"
    gallery.write_text("LAT,LON\n" + "\n".join(f"{a},{b}" for a in range(-60, 61, 30) for b in range(-150, 151, 60)) + "\n")
    monkeypatch.setenv("GEOAGENT_FUSION_GALLERY", str(gallery))
    code, out, err = run(
        ["index", "build", str(csv), "--images", str(images), "--encoder", f"fusion:{run_dir}", "--json"], capsys
    )
    assert code == 0, err
    built = json.loads(out)
    assert built["added"] == 12 and "-fusion-" in built["collection"]

    from agent.settings import load_settings
    from retrieval_service.retrieval.retriever import Retriever

    monkeypatch.setenv("GEOAGENT_ENCODER", f"fusion:{run_dir / 'fusion.pt'}")
    fusion = Retriever.from_settings(load_settings())
    photo = Photo.resolve(images / "p3.png", tmp_path / "cache")
    result = fusion.search(photo, k_gallery=3, k_database=2)
    assert len(result.gallery) == 3 and len(result.database) == 2
    assert "-fusion-" in fusion.gallery_collection and fusion.settings.database_collection == built["collection"]
    scores = fusion.verify(photo, [(g.lat, g.lon) for g in result.gallery])
    assert scores == pytest.approx([g.score for g in result.gallery], abs=1e-4)
    assert fusion.info()["gallery_ready"] is True
    # exact search by default: the checkpoint's softmax over its whole gallery, as in the GeoCLIP mode
    coords = np.array([[a, b] for a in range(-60, 61, 30) for b in range(-150, 151, 60)], np.float32)
    encoder = fusion.backend.encoder
    logits = encoder.scale * (encoder.encode_locations(coords) @ fusion.gps_embed_images([photo])[0])
    softmax = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert [g.probability for g in result.gallery] == pytest.approx(sorted(softmax, reverse=True)[:3], abs=1e-5)
    rest = sum(c.probability or 0.0 for c in result.gallery_rest)
    assert 0.99 <= sum(g.probability for g in result.gallery) + rest <= 1.0 + 1e-6  # the rest: 99.5% of what is left
    store = fusion.store
    assert store.has_collection(built["collection"]) and not store.has_collection(fusion.gallery_collection)
    fusion.close()
    monkeypatch.setenv("GEOAGENT_GALLERY_SEARCH", "hnsw")  # the store's approximate index: no probabilities
    hnsw = Retriever.from_settings(load_settings())
    found = hnsw.search(photo, k_gallery=3, k_database=0).gallery
    assert [g.probability for g in found] == [None] * 3 and hnsw.store.has_collection(hnsw.gallery_collection)
    assert [(g.lat, g.lon) for g in found] == [(g.lat, g.lon) for g in result.gallery]
    hnsw.close()
    monkeypatch.delenv("GEOAGENT_GALLERY_SEARCH")
    geoclip = Retriever.from_settings(tiny_settings)  # the default encoder: other collections, never mixed
    assert geoclip.gallery_collection != Retriever.from_settings(load_settings()).gallery_collection
    assert geoclip.settings.database_collection == "image_database" and not geoclip.has_database()
    geoclip.close()


def test_fusion_cli_bad_inputs_are_clear(tiny_env, photo_set, tmp_path, capsys, monkeypatch) -> None:
    csv, images = photo_set
    code, _, err = run(
        ["train", "precompute", str(csv), "--images", str(tmp_path / "nope"), "--out", str(tmp_path / "f"), "--no-segmentation"],
        capsys,
    )
    assert code == 2 and "images folder not found" in err and "fix:" in err
    bad = tmp_path / "bad.csv"
    bad.write_text("IMG_ID,LAT,LON\na.png,north,east\n")
    code, _, err = run(
        ["train", "precompute", str(bad), "--images", str(images), "--out", str(tmp_path / "f"), "--no-segmentation"], capsys
    )
    assert code == 2 and "valid coordinates" in err
    none_readable = tmp_path / "gone.csv"
    none_readable.write_text("IMG_ID,LAT,LON\ngone1.png,1,2\ngone2.png,3,4\n")
    with pytest.raises(DatasetError, match="none of the 2 images"):
        from retrieval_service.fusion.precompute import precompute

        precompute(
            none_readable,
            images,
            tmp_path / "g",
            image_model=tiny_env["GEOAGENT_IMAGE_MODEL"],
            image_pretrained="none",
            device="cpu",
            token_grid=2,
        )
    code, _, err = run(["train", "fusion", str(tmp_path / "nothing"), "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "no precomputed features" in err
    code, _, err = run(
        ["index", "build", str(csv), "--images", str(images), "--encoder", f"fusion:{tmp_path / 'none.pt'}"], capsys
    )
    assert code == 2 and "fusion checkpoint not found" in err
    code, _, err = run(["index", "build", str(csv), "--images", str(images), "--encoder", "clip:x"], capsys)
    assert code == 2 and "unknown encoder" in err
    wrong = tmp_path / "wrong.pt"
    wrong.write_bytes(b"junk")
    monkeypatch.setenv("GEOAGENT_ENCODER", f"fusion:{wrong}")
    from agent.settings import load_settings
    from retrieval_service.retrieval.retriever import Retriever

    with pytest.raises(WeightsNotFoundError, match="not a readable checkpoint"):
        Retriever.from_settings(load_settings()).warm_up()
    monkeypatch.setenv("GEOAGENT_ENCODER", "fusion:")
    with pytest.raises(ConfigError, match="unknown encoder"):
        load_settings()


def test_fusion_with_the_real_segmenter_and_text(tiny_env, photo_set, tmp_path, capsys, monkeypatch) -> None:
    """Class maps from the real Cityscapes TFLite model and TransGeoCLIP's text prompts, through
    precompute, training (both views, text loss) and retrieval; a different segmenter is refused."""
    model_dir = shared_path("models", "cityscapes-deeplab")
    monkeypatch.setenv("GEOAGENT_SEGMENTER", "tflite")
    monkeypatch.setenv("GEOAGENT_SEGMENTER_MODEL", str(model_dir / "deeplab_mobilenet_edgetpu_slim_cityscapes_quant.tflite"))
    csv, images = photo_set
    feats, run_dir = tmp_path / "features", tmp_path / "run"
    code, out, err = run(
        [
            "train",
            "precompute",
            str(csv),
            "--images",
            str(images),
            "--out",
            str(feats),
            "--text",
            "--token-grid",
            "2",
            "--seg-grid",
            "8",
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    spec = json.loads(out)["spec"]
    assert spec["seg_backend"] == "tflite" and len(spec["seg_labels"]) == 19 and spec["text_dim"] == 768
    fs = FeatureSet(feats)
    maps = fs.take(np.flatnonzero(fs.column("ok")), ("classmap",))["classmap"]
    assert maps.shape[1:] == (8, 8) and (maps < 19).any()
    assert fs.column("has_text").sum() == 13
    code, out, err = run(
        [
            "train",
            "fusion",
            str(feats),
            "--out",
            str(run_dir),
            "--text",
            "--gps-encoder",
            "location_attention",
            "--queue-size",
            "8",
            *TINY,
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    log = (run_dir / "train.csv").read_text()
    assert "loss_text" in log and "loss_seg" in log

    from agent.settings import load_settings
    from retrieval_service.fusion.encoder import FusionEncoder

    encoder = FusionEncoder(run_dir, load_settings(), "cpu")
    vectors = encoder.encode([Image.open(images / "p1.png").convert("RGB")])
    assert vectors.shape == (1, encoder.dim) and np.isclose(np.linalg.norm(vectors), 1.0, atol=1e-4)

    # the text branch at inference: towns near the gallery candidates, scored by their descriptions
    from agent.decision.sources import tool_components
    from retrieval_service.retrieval.retriever import Retriever
    from tools import Services, make_tools
    from tools.common import photo_runtime

    gallery = tmp_path / "gallery.csv"
    gallery.write_text("LAT,LON\n48.85,2.35\n45.76,4.84\n40.42,-3.70\n35.68,139.65\n-33.87,151.21\n")
    monkeypatch.setenv("GEOAGENT_FUSION_GALLERY", str(gallery))
    monkeypatch.setenv("GEOAGENT_ENCODER", f"fusion:{run_dir / 'fusion.pt'}")
    settings = load_settings()
    retriever = Retriever.from_settings(settings)
    photo = Photo.resolve(images / "p1.png", tmp_path / "cache")
    found = retriever.search(photo, k_gallery=5, k_database=0)
    assert encoder.has_text and {c.source for c in found.text} == {"text"} and len(found.text) == 5
    assert sum(c.probability for c in found.text) == pytest.approx(1.0, abs=1e-5)
    assert all(c.get("description", "").startswith("A photo taken in ") for c in found.text)
    assert "Paris" in {c.get("name") for c in found.text}
    assert {c.source for c in tool_components(found.gallery + found.text)} == {"gallery", "text"}
    tool = {t.name: t for t in make_tools(Services(settings, retriever=retriever))}["retrieve"]
    content = tool.invoke({"k": 5, "runtime": photo_runtime(photo)})
    assert [row["place"] for row in content["text"]] == [c.get("name") for c in found.text]
    retriever.close()
    labels = tmp_path / "labels.txt"
    labels.write_text("road\nsky\nother\n")
    monkeypatch.setenv("GEOAGENT_SEGMENTER_LABELS", str(labels))
    with pytest.raises(ModelMismatchError, match="3 classes"):
        FusionEncoder(run_dir, load_settings(), "cpu")
