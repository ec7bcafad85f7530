"""Retrieval mode reproduces GeoCLIP exactly: one random-weight ViT-L/14, built as the `geoclip`
package builds it (Hugging Face CLIP) and converted to open_clip for geoagent, with GeoCLIP's real
image head, location encoder, temperature and 100K gallery on both sides. The `geoclip` package's own
``GeoCLIP.predict`` (constructed around the random backbone, no hub loading) and geoagent's
``Retriever.search`` must give the same top-1 coordinate and top-5 probabilities (within 1e-4) on
>= 20 dev photos. No weights are downloaded.

Runtime: two ViT-L/14 forward passes per photo on CPU; the 100K location features, which
``predict`` recomputes on every call, are memoised (same input tensor, same module, same output).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from retrieval_service.core.photo import Photo

N_PHOTOS = 20


def hf_clip_to_open_clip(hf: dict[str, torch.Tensor], vision_layers: int, text_layers: int) -> dict[str, torch.Tensor]:
    """A Hugging Face ``CLIPModel`` state dict as an open_clip ``CLIP`` state dict (ViT, both towers)."""
    out: dict[str, torch.Tensor] = {}

    def block(src: str, dst: str) -> None:
        q, k, v = (hf[f"{src}.self_attn.{n}_proj.weight"] for n in "qkv")
        qb, kb, vb = (hf[f"{src}.self_attn.{n}_proj.bias"] for n in "qkv")
        out[f"{dst}.attn.in_proj_weight"] = torch.cat([q, k, v])
        out[f"{dst}.attn.in_proj_bias"] = torch.cat([qb, kb, vb])
        for part in ("weight", "bias"):
            out[f"{dst}.attn.out_proj.{part}"] = hf[f"{src}.self_attn.out_proj.{part}"]
            out[f"{dst}.ln_1.{part}"] = hf[f"{src}.layer_norm1.{part}"]
            out[f"{dst}.ln_2.{part}"] = hf[f"{src}.layer_norm2.{part}"]
            out[f"{dst}.mlp.c_fc.{part}"] = hf[f"{src}.mlp.fc1.{part}"]
            out[f"{dst}.mlp.c_proj.{part}"] = hf[f"{src}.mlp.fc2.{part}"]

    out["visual.class_embedding"] = hf["vision_model.embeddings.class_embedding"]
    out["visual.conv1.weight"] = hf["vision_model.embeddings.patch_embedding.weight"]
    out["visual.positional_embedding"] = hf["vision_model.embeddings.position_embedding.weight"]
    for part in ("weight", "bias"):
        out[f"visual.ln_pre.{part}"] = hf[f"vision_model.pre_layrnorm.{part}"]
        out[f"visual.ln_post.{part}"] = hf[f"vision_model.post_layernorm.{part}"]
        out[f"ln_final.{part}"] = hf[f"text_model.final_layer_norm.{part}"]
    out["visual.proj"] = hf["visual_projection.weight"].T.contiguous()
    for i in range(vision_layers):
        block(f"vision_model.encoder.layers.{i}", f"visual.transformer.resblocks.{i}")
    out["token_embedding.weight"] = hf["text_model.embeddings.token_embedding.weight"]
    out["positional_embedding"] = hf["text_model.embeddings.position_embedding.weight"]
    for i in range(text_layers):
        block(f"text_model.encoder.layers.{i}", f"transformer.resblocks.{i}")
    out["text_projection"] = hf["text_projection.weight"].T.contiguous()
    out["logit_scale"] = hf["logit_scale"]
    return out


class _Memo(torch.nn.Module):
    """A module's output for an identical input tensor, computed once."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self._key: tuple | None = None
        self._out: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        key = (x.data_ptr(), tuple(x.shape), x._version)
        if key != self._key:
            self._key, self._out = key, self.inner(x)
        return self._out


@pytest.fixture(scope="module")
def both_forms(tmp_path_factory: pytest.TempPathFactory, gallery_data_dir: Path):
    pytest.importorskip("geoclip")
    pytest.importorskip("transformers")
    from geoclip import GeoCLIP

    from retrieval_service.retrieval.retriever import Retriever
    from retrieval_service.retrieval.settings import RetrievalSettings

    torch.manual_seed(0)
    reference = GeoCLIP(from_pretrained=True, clip_pretrained=False).eval()  # GeoCLIP's heads, random ViT-L/14
    clip = reference.image_encoder.CLIP
    state = hf_clip_to_open_clip(
        clip.state_dict(), clip.config.vision_config.num_hidden_layers, clip.config.text_config.num_hidden_layers
    )
    ckpt = tmp_path_factory.mktemp("vit-l14") / "random_vit_l14.pt"
    torch.save(state, ckpt)
    del state
    reference.location_encoder = _Memo(reference.location_encoder)
    settings = RetrievalSettings(
        data_dir=gallery_data_dir,
        qdrant_url=None,
        image_model="ViT-L-14-quickgelu",
        image_pretrained=str(ckpt),
        device="cpu",
        gallery_search="exact",
    )
    retriever = Retriever(settings)
    retriever.warm_up()  # loads the converted checkpoint and the gallery vectors
    ckpt.unlink()
    return reference, retriever


def test_retrieval_reproduces_geoclip_predict(both_forms, dev_images: Path, tmp_path: Path):
    reference, retriever = both_forms
    photos = sorted(p for p in dev_images.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})[:N_PHOTOS]
    assert len(photos) == N_PHOTOS
    worst = 0.0
    for photo in photos:
        ref_gps, ref_prob = reference.predict(str(photo), top_k=5)
        result = retriever.search(Photo.resolve(photo, tmp_path / "cache"), k_gallery=5, k_database=0)
        ours = result.gallery
        assert len(ours) == 5
        assert (ours[0].lat, ours[0].lon) == pytest.approx((float(ref_gps[0, 0]), float(ref_gps[0, 1])), abs=1e-6), photo.name
        probs = np.array([c.probability for c in ours])
        worst = max(worst, float(np.abs(probs - ref_prob.numpy()).max()))
        assert np.allclose(probs, ref_prob.numpy(), atol=1e-4), (photo.name, probs, ref_prob)
        # the rest of the distribution is summarised per cell (at most 128 cells; the decision spreads
        # what is left uniformly): never more than the whole
        rest = sum(c.probability for c in result.gallery_rest)
        assert rest > 0 and probs.sum() + rest <= 1.0 + 1e-6
    print(f"worst top-5 probability difference over {N_PHOTOS} photos: {worst:.2e}")
    assert worst < 1e-4
