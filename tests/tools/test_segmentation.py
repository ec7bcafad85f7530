"""Segmentation with the real Cityscapes TFLite model; backend selection; scene hints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agent.settings import Settings
from retrieval_service.core.errors import ConfigError, WeightsNotFoundError
from retrieval_service.evidence.scene import compose, scene_hints
from retrieval_service.evidence.segmentation import TFLiteSegmenter, make_segmenter


@pytest.fixture(scope="module")
def segmenter(cityscapes_model: Path) -> TFLiteSegmenter:
    return TFLiteSegmenter(cityscapes_model)


def test_reference_image_agrees_with_mask(segmenter, cityscapes_dir: Path):
    image = Image.open(cityscapes_dir / "cityscapes_segmentation.bmp")
    ref = np.array(Image.open(cityscapes_dir / "cityscapes_segmentation_mask.bmp"))
    pred = segmenter.segment(image)
    assert pred.shape == ref.shape
    assert (pred == ref).mean() >= 0.90
    scene = compose(pred, segmenter.labels, segmenter.name)
    assert next(iter(scene.shares)) == "road" and scene.shares["road"] > 0.4
    assert list(scene.shares.values()) == sorted(scene.shares.values(), reverse=True)
    assert "open road" in scene.hints or "urban street" in scene.hints


def test_labels_are_cityscapes_train_ids(segmenter):
    assert len(segmenter.labels) == 19
    assert segmenter.labels[0] == "road" and segmenter.labels[10] == "sky" and segmenter.labels[18] == "bicycle"


def test_any_photo_size(segmenter, dev_photo: Path):
    pred = segmenter.segment(Image.open(dev_photo))
    assert pred.shape == (513, 513) and pred.min() >= 0 and pred.max() < 19


def test_hints_from_groups():
    assert "coast" in scene_hints({"water": 0.3, "sky": 0.4, "shore": 0.05})
    assert "mountains" in scene_hints({"mountain": 0.3, "sky": 0.3})
    assert "vegetation-dominated" in scene_hints({"vegetation": 0.6})
    assert "urban street" in scene_hints({"road": 0.3, "built": 0.3})
    assert scene_hints({}) == []


def test_backend_selection(tmp_path: Path, cityscapes_model: Path):
    auto = make_segmenter(Settings(data_dir=tmp_path, segmenter_model=str(cityscapes_model)))
    assert isinstance(auto, TFLiteSegmenter)
    with pytest.raises(ConfigError, match="disabled"):
        make_segmenter(Settings(data_dir=tmp_path, segmenter="none"))
    assert isinstance(make_segmenter(Settings(data_dir=tmp_path, segmenter="tflite")), TFLiteSegmenter)  # the shipped model
    with pytest.raises(WeightsNotFoundError, match="not found"):
        make_segmenter(Settings(data_dir=tmp_path, segmenter="tflite", segmenter_model=str(tmp_path / "x.tflite")))
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a model")
    (tmp_path / "labels.txt").write_text("a\nb\n")
    with pytest.raises(WeightsNotFoundError, match="not a usable TFLite model"):
        make_segmenter(Settings(data_dir=tmp_path, segmenter_model=str(bad)))


def test_missing_labels_file(tmp_path: Path, cityscapes_model: Path):
    with pytest.raises(ConfigError, match="labels file not found"):
        TFLiteSegmenter(cityscapes_model, tmp_path / "labels.txt")


def test_segformer_backend_with_a_local_tiny_model(tmp_path: Path, dev_photo: Path):
    pytest.importorskip("transformers", reason="the segformer extra is not installed")
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    from retrieval_service.evidence.segmentation import SegFormerSegmenter

    labels = {0: "sky", 1: "sea", 2: "sand, beach"}
    config = SegformerConfig(
        num_labels=3,
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
        hidden_sizes=[8, 16, 16, 16],
        depths=[1, 1, 1, 1],
        num_attention_heads=[1, 1, 1, 1],
        decoder_hidden_size=16,
    )
    SegformerForSemanticSegmentation(config).save_pretrained(tmp_path / "tiny")
    SegformerImageProcessor(size={"height": 64, "width": 64}).save_pretrained(tmp_path / "tiny")

    seg = make_segmenter(Settings(data_dir=tmp_path, segmenter="segformer", segmenter_model=str(tmp_path / "tiny")))
    assert isinstance(seg, SegFormerSegmenter) and seg.labels == ["sky", "sea", "sand"]
    class_map = seg.segment(Image.open(dev_photo))
    assert class_map.shape == (16, 16) and class_map.max() < 3
    scene = compose(class_map, seg.labels, seg.name)
    assert scene.backend == "segformer" and sum(scene.shares.values()) == pytest.approx(1, abs=0.03)


def test_segformer_without_weights(tmp_path: Path):
    pytest.importorskip("transformers", reason="the segformer extra is not installed")
    from retrieval_service.evidence.segmentation import SegFormerSegmenter

    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsNotFoundError, match="could not be loaded"):
        SegFormerSegmenter(str(tmp_path / "empty"))


def test_auto_uses_the_shipped_model_offline(tmp_path: Path, monkeypatch, dev_photo: Path):
    """`auto` once tried SegFormer from the hub and failed offline; the Cityscapes model now ships."""
    from retrieval_service.evidence.segmentation import SHIPPED_TFLITE, TFLiteSegmenter, make_segmenter
    from retrieval_service.evidence.settings import EvidenceSettings

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # nothing cached
    monkeypatch.setattr("huggingface_hub.try_to_load_from_cache", lambda *a, **k: None)
    for choice in ("auto", "tflite"):
        seg = make_segmenter(EvidenceSettings(data_dir=tmp_path, segmenter=choice, segmenter_model=None))
        assert isinstance(seg, TFLiteSegmenter) and seg.labels[10] == "sky"
    assert SHIPPED_TFLITE.is_file() and "Apache License" in (SHIPPED_TFLITE.parent / "LICENSE").read_text()
    classes = seg.segment(Image.open(dev_photo).convert("RGB"))
    assert classes.ndim == 2 and classes.max() < len(seg.labels)
