"""The open_clip image encoder: tiny random model plumbing, fixed random init, weight errors."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retrieval_service.core.errors import ConfigError, WeightsNotFoundError
from retrieval_service.retrieval.image_encoder import ImageEncoder, resolve_device
from tests.waiting import GUARD_S


def _images(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (40 + i, 50, 3), dtype=np.uint8)) for i in range(n)]


def test_tiny_model_encodes_batches(tiny_model_config):
    enc = ImageEncoder(str(tiny_model_config), "none", "cpu", batch_size=2)
    assert enc.dim == 768
    feats = enc.encode(_images(5))
    assert feats.shape == (5, 768) and feats.dtype == np.float32
    assert np.isfinite(feats).all()
    assert not np.allclose(feats[0], feats[1])
    assert enc.encode([]).shape == (0, 768)


def test_random_init_is_identical_across_processes(tiny_model_config, tmp_path):
    img = tmp_path / "x.png"
    _images(1)[0].save(img)
    code = (
        "import sys; from PIL import Image; from retrieval_service.retrieval.image_encoder import ImageEncoder; "
        "e = ImageEncoder(sys.argv[1], 'none', 'cpu'); print(e.encode([Image.open(sys.argv[2]).convert('RGB')])[0][:8].tolist())"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tiny_model_config), str(img)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    runs = [(p.communicate(timeout=GUARD_S), p.returncode) for p in procs]
    assert all(rc == 0 for _, rc in runs), runs[0][0][1]
    assert "RANDOM WEIGHTS" in runs[0][0][1]
    a, b = (json.loads(out.strip().splitlines()[-1]) for (out, _), _ in runs)
    assert a == b


def test_unknown_model_name_and_missing_config():
    with pytest.raises(ConfigError, match="unknown open_clip model"):
        ImageEncoder("ViT-Nope-99", "none", "cpu")
    with pytest.raises(ConfigError, match="does not exist"):
        ImageEncoder("/no/such/model.json", "none", "cpu")


def test_missing_checkpoint_path(tiny_model_config):
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        ImageEncoder(str(tiny_model_config), "/no/such/ckpt.pt", "cpu")


def test_unknown_pretrained_tag(tiny_model_config):
    with pytest.raises(WeightsNotFoundError, match="no pretrained weights"):
        ImageEncoder("ViT-B-32", "not-a-tag", "cpu")


def test_offline_without_cached_weights_fails_fast_and_says_how_to_fix(monkeypatch, tmp_path):
    monkeypatch.setattr("retrieval_service.retrieval.image_encoder.hub_reachable", lambda timeout_s=3.0: False)
    monkeypatch.setattr("retrieval_service.retrieval.image_encoder._cached_hub_file", lambda hf_hub: None)
    started = time.perf_counter()
    with pytest.raises(WeightsNotFoundError) as err:
        ImageEncoder("ViT-B-32", "laion2b_s34b_b79k", "cpu")
    assert time.perf_counter() - started < 10
    assert "ViT-B-32/laion2b_s34b_b79k" in err.value.message
    assert "GEOAGENT_IMAGE_PRETRAINED" in err.value.hint and "cache" in err.value.hint


def test_local_checkpoint_path_loads(tiny_model_config, tmp_path):
    import torch

    enc = ImageEncoder(str(tiny_model_config), "none", "cpu")
    ckpt = tmp_path / "tiny.pt"
    state = {k: v + 0.01 for k, v in enc.model.state_dict().items()}
    torch.save(state, ckpt)
    loaded = ImageEncoder(str(tiny_model_config), str(ckpt), "cpu")
    img = _images(1)
    assert not np.allclose(loaded.encode(img), enc.encode(img))
    assert torch.allclose(loaded.model.state_dict()["visual.proj"], state["visual.proj"])


def test_vit_l14_openai_preprocessing_matches_geoclip():
    """open_clip's eval transform for ViT-L-14/openai = HF CLIPImageProcessor of openai/clip-vit-large-patch14."""
    import open_clip
    from torchvision import transforms as T

    cfg = open_clip.get_pretrained_cfg("ViT-L-14", "openai")
    assert cfg["mean"] == (0.48145466, 0.4578275, 0.40821073) and cfg["std"] == (0.26862954, 0.26130258, 0.27577711)
    assert cfg["interpolation"] == "bicubic" and cfg["resize_mode"] == "shortest"
    tf = open_clip.image_transform(
        224, is_train=False, mean=cfg["mean"], std=cfg["std"], interpolation="bicubic", resize_mode="shortest"
    )
    kinds = [type(t) for t in tf.transforms]
    assert kinds[0] is T.Resize and tf.transforms[0].size == 224
    assert tf.transforms[0].interpolation == T.InterpolationMode.BICUBIC
    assert T.CenterCrop in kinds and T.Normalize in kinds
    out = tf(Image.new("RGB", (640, 480)))
    assert tuple(out.shape) == (3, 224, 224)


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(ConfigError):
        resolve_device("warp-drive")


def test_cached_hub_weights_are_loaded_locally_with_the_tag_settings(monkeypatch, tmp_path):
    """A cached hub file is used as a local checkpoint (no network round-trips), keeping the tag's
    QuickGELU and preprocessing settings that a bare checkpoint path would lose."""
    from retrieval_service.retrieval import image_encoder

    fake = tmp_path / "open_clip_pytorch_model.bin"
    fake.write_bytes(b"")
    monkeypatch.setattr(image_encoder, "_cached_hub_file", lambda hf_hub: str(fake) if "large_patch14" in hf_hub else None)
    monkeypatch.setattr(image_encoder, "hub_reachable", lambda timeout_s=3.0: pytest.fail("the hub was contacted"))
    enc = ImageEncoder.__new__(ImageEncoder)
    enc.model_name, enc.pretrained = "ViT-L-14", "openai"
    path, kwargs = enc._resolve_tag("openai")
    assert path == str(fake)
    assert (
        kwargs["force_quick_gelu"] is True
        and kwargs["image_interpolation"] == "bicubic"
        and kwargs["image_resize_mode"] == "shortest"
    )


def test_preprocessing_is_geoclips_pixel_for_pixel(dev_images):
    """open_clip's ViT-L-14/openai transform with the floored centre crop gives the pixels of GeoCLIP's
    HF CLIPImageProcessor; torchvision's rounding CenterCrop shifts some photos by one pixel."""
    import open_clip
    import torch
    from transformers import CLIPImageProcessor

    from retrieval_service.retrieval.image_encoder import FloorCenterCrop, floor_center_crops

    cfg = open_clip.get_pretrained_cfg("ViT-L-14", "openai")
    rounding = open_clip.image_transform(
        224, is_train=False, mean=cfg["mean"], std=cfg["std"], interpolation="bicubic", resize_mode="shortest"
    )
    ours = floor_center_crops(rounding)
    assert any(isinstance(t, FloorCenterCrop) for t in ours.transforms)
    hf = CLIPImageProcessor()
    shifted = 0
    for path in sorted(dev_images.iterdir())[:30]:
        with Image.open(path) as img:
            img = img.convert("RGB")
            ref = hf(images=img, return_tensors="pt")["pixel_values"][0]
            assert torch.allclose(ours(img), ref, atol=2e-2), path.name  # bicubic resampling rounding only
            assert (ours(img) - ref).abs().mean() < 1e-3
            shifted += int((rounding(img) - ref).abs().mean() > 1e-2)
    assert shifted >= 1


def _mapped_ranges(path) -> list[tuple[int, int]]:
    """Address ranges of this process that map ``path``."""
    out = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5].strip() == str(path):
            lo, hi = (int(a, 16) for a in parts[0].split("-"))
            out.append((lo, hi))
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps (Linux)")
def test_local_checkpoint_is_memory_mapped_not_copied(tiny_model_config, tmp_path):
    """A local checkpoint's tensors become the model's weights, read from the memory-mapped file:
    no random-init model and no in-memory copy of the file are held beside them (the peak memory of
    ViT-L/14 retrieval, evals/bench_memory.py). The encoding equals open_clip's own loading."""
    import open_clip
    import torch

    reference = ImageEncoder(str(tiny_model_config), "none", "cpu")
    ckpt = tmp_path / "tiny.pt"
    torch.save({k: v + 0.01 for k, v in reference.model.state_dict().items()}, ckpt)
    loaded = ImageEncoder(str(tiny_model_config), str(ckpt), "cpu")
    ranges = _mapped_ranges(ckpt.resolve())
    assert ranges, "the checkpoint file is not memory-mapped"
    params = dict(loaded.model.named_parameters())
    outside = [name for name, p in params.items() if not any(lo <= p.data_ptr() < hi for lo, hi in ranges)]
    assert not outside, f"parameters copied out of the mapped checkpoint: {outside[:5]}"
    assert not any(b.is_meta for b in loaded.model.buffers())
    # the same model as open_clip's loading (random init, then a copy of the file)
    name = loaded.model_name
    own, _, _ = open_clip.create_model_and_transforms(name, pretrained=str(ckpt), device="cpu")
    own.eval()
    for key, value in own.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
    assert torch.equal(loaded.model.attn_mask, own.attn_mask)  # not in the file: rebuilt
    img = _images(2)
    batch = torch.stack([loaded.preprocess(i) for i in img])
    with torch.inference_mode():
        expected = own.encode_image(batch, normalize=False).numpy()
    np.testing.assert_allclose(loaded.encode(img), expected, rtol=1e-5, atol=1e-6)


def test_a_model_with_an_unknown_buffer_still_loads_its_checkpoint(tiny_model_config, tmp_path, monkeypatch):
    """When a non-persistent buffer cannot be rebuilt on the meta device, open_clip builds the model
    and the memory-mapped weights are assigned into it: same weights, nothing left on meta."""
    import torch

    from retrieval_service.retrieval import checkpoint

    reference = ImageEncoder(str(tiny_model_config), "none", "cpu")
    ckpt = tmp_path / "tiny.pt"
    state = {k: v + 0.02 for k, v in reference.model.state_dict().items()}
    torch.save(state, ckpt)
    monkeypatch.setattr(checkpoint, "_rebuild_buffers", lambda model: False)
    loaded = ImageEncoder(str(tiny_model_config), str(ckpt), "cpu")
    assert not any(t.is_meta for t in [*loaded.model.parameters(), *loaded.model.buffers()])
    assert torch.equal(loaded.model.state_dict()["visual.proj"], state["visual.proj"])
    assert torch.equal(loaded.model.attn_mask, reference.model.attn_mask)
