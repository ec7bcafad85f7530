"""Unit checks of the fusion model's parts: shapes, masking, attention in both directions, loss
symmetry, GPS-encoder continuity, and that a photo's embedding never depends on its batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from retrieval_service.core.errors import ConfigError
from retrieval_service.fusion.attention import BidirectionalCrossAttention
from retrieval_service.fusion.config import VOID_CLASS, FeatureSpec, FusionConfig
from retrieval_service.fusion.gps import make_gps_encoder, mercator_projection
from retrieval_service.fusion.losses import Embeddings, GPSQueue, fusion_loss, info_nce
from retrieval_service.fusion.model import FusionModel

SPEC = FeatureSpec(
    image_model="t",
    image_pretrained="none",
    token_grid=2,
    token_dim=24,
    pooled_dim=24,
    seg_backend="synthetic",
    seg_labels=("a", "b", "c"),
    seg_grid=8,
)


def small_config(**kw) -> FusionConfig:
    base = dict(dim=32, embed_dim=16, heads=4, layers=1, dropout=0.0, seg_patch=4, rff_features=16, gps_hidden=32)
    return FusionConfig(**(base | kw))


def inputs(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, 24, generator=g), torch.randn(n, 24, generator=g), torch.randint(0, 3, (n, 8, 8), generator=g)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"fusion": "concat"},
        {"use_segmentation": False},
        {"seg_encoding": "onehot"},
        {"gps_encoder": "location_attention"},
        {"database_vector": "fused"},
    ],
)
def test_fusion_shapes_and_unit_norms(kw) -> None:
    model = FusionModel(SPEC, small_config(**kw)).eval()
    tokens, pooled, classmap = inputs(5)
    out = model(tokens, pooled, classmap)
    assert out.fused.shape == (5, 16)
    assert torch.allclose(out.fused.norm(dim=1), torch.ones(5), atol=1e-5)
    assert (out.seg is None) == (not model.config.use_segmentation)
    db = model.database_vector(out)
    assert db.shape == (5, model.database_dim)
    gps = model.encode_gps(torch.tensor([[48.85, 2.35], [-33.9, 151.2]]))
    assert gps.shape == (2, 16) and torch.allclose(gps.norm(dim=1), torch.ones(2), atol=1e-5)


def test_fusion_embedding_does_not_depend_on_batch_composition() -> None:
    model = FusionModel(SPEC, small_config()).eval()
    tokens, pooled, classmap = inputs(6)
    other = inputs(6, seed=1)
    with torch.no_grad():
        alone = model(tokens[:1], pooled[:1], classmap[:1]).fused
        in_batch = model(tokens, pooled, classmap).fused[:1]
        mixed = model(
            torch.cat((tokens[:1], other[0])), torch.cat((pooled[:1], other[1])), torch.cat((classmap[:1], other[2]))
        ).fused[:1]
    assert torch.allclose(alone, in_batch, atol=1e-5) and torch.allclose(alone, mixed, atol=1e-5)


def test_fusion_cross_attention_flows_both_ways_and_respects_masks() -> None:
    torch.manual_seed(0)
    cross = BidirectionalCrossAttention(16, 2, 1, 0.0).eval()
    image, seg = torch.randn(1, 5, 16), torch.randn(1, 4, 16)
    with torch.no_grad():
        base_i, base_s = cross(image, seg)
        seg2 = seg.clone()
        seg2[0, 3] += 5.0
        i2, _s2 = cross(image, seg2)
        assert not torch.allclose(base_i, i2)  # image tokens read the segmentation tokens
        image2 = image.clone()
        image2[0, 2] += 5.0
        _, s3 = cross(image2, seg)
        assert not torch.allclose(base_s, s3)  # and segmentation tokens read the image tokens
        mask = torch.tensor([[False, False, False, True]])
        m1, _ = cross(image, seg, None, mask)
        m2, _ = cross(image, seg2, None, mask)
        assert torch.allclose(m1, m2, atol=1e-6)  # a masked (void) token is never attended
        empty, _ = cross(image, seg, None, torch.ones(1, 4, dtype=torch.bool))
        assert torch.isfinite(empty).all()


def test_fusion_void_class_map_is_masked_not_nan() -> None:
    model = FusionModel(SPEC, small_config()).eval()
    tokens, pooled, _ = inputs(2)
    void = torch.full((2, 8, 8), VOID_CLASS)
    with torch.no_grad():
        out = model(tokens, pooled, void)
    assert torch.isfinite(out.fused).all()
    _, mask = model.seg_encoder(void)
    assert mask.all()


def test_fusion_info_nce_is_symmetric_and_rewards_alignment() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=1)
    b = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=1)
    scale = torch.tensor(10.0)
    assert torch.allclose(info_nce(a, b, scale), info_nce(b, a, scale))
    assert info_nce(a, a, scale) < info_nce(a, b, scale)
    extra = torch.nn.functional.normalize(torch.randn(4, 16, generator=g), dim=1)
    assert info_nce(a, a, scale, extra) > info_nce(a, a, scale)  # more negatives: a harder task


def test_fusion_gps_queue_wraps_and_joins_the_loss() -> None:
    queue = GPSQueue(5)
    queue.push(torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]))
    queue.push(torch.tensor([[4.0, 4.0], [5.0, 5.0], [6.0, 6.0]]))
    assert queue.get().shape == (5, 2) and int(queue.ptr) == 1
    assert queue.coords[0].tolist() == [6.0, 6.0]
    model = FusionModel(SPEC, small_config(queue_size=5))
    tokens, pooled, classmap = inputs(4)
    out = model(tokens, pooled, classmap)
    latlon = torch.tensor([[0.0, 0.0], [10.0, 10.0], [20.0, 20.0], [30.0, 30.0]])
    gps = model.encode_gps(latlon)
    with_q = fusion_loss(model.config, model.scales(), Embeddings(out.fused, out.seg, gps, model.encode_gps(queue.get())))
    without = fusion_loss(model.config, model.scales(), Embeddings(out.fused, out.seg, gps))
    assert with_q.seg is not None and not torch.allclose(with_q.total, without.total)


def test_fusion_info_nce_shares_of_row_blocks_add_up_to_the_whole_batch() -> None:
    """What two processes with half the batch each compute (``rows``) sums to one process's loss,
    and so do the gradients: the basis of the gathered-negatives data parallelism."""
    g = torch.Generator().manual_seed(1)
    a = torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=1).requires_grad_()
    b = torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=1).requires_grad_()
    extra = torch.nn.functional.normalize(torch.randn(3, 8, generator=g), dim=1)
    scale = torch.tensor(7.0)
    whole = info_nce(a, b, scale, extra)
    (grad_whole,) = torch.autograd.grad(whole, a)
    halves = info_nce(a, b, scale, extra, slice(0, 3)) + info_nce(a, b, scale, extra, slice(3, 6))
    (grad_halves,) = torch.autograd.grad(halves, a)
    assert torch.allclose(whole, halves, atol=1e-6) and torch.allclose(grad_whole, grad_halves, atol=1e-6)
    picked = info_nce(a, b, scale, rows=torch.tensor([0, 2, 4])) + info_nce(a, b, scale, rows=torch.tensor([1, 3, 5]))
    assert torch.allclose(picked, info_nce(a, b, scale), atol=1e-6)


@pytest.mark.parametrize("kind", ["rff", "location_attention"])
@pytest.mark.parametrize("projection", ["equal_earth", "mercator"])
def test_fusion_gps_encoder_is_continuous(kind: str, projection: str) -> None:
    encoder = make_gps_encoder(small_config(gps_encoder=kind, projection=projection, rff_features=64, gps_hidden=64)).eval()
    here = torch.tensor([[45.0, 7.0]])
    near = torch.tensor([[45.001, 7.001]])
    antipode = torch.tensor([[-45.0, -173.0]])
    g = torch.Generator().manual_seed(0)
    world = torch.stack((torch.rand(2000, generator=g) * 170 - 85, torch.rand(2000, generator=g) * 360 - 180), dim=1)
    with torch.no_grad():
        centre = encoder(world).mean(dim=0)  # an untrained MLP's shared offset, taken out to compare directions
        e = [torch.nn.functional.normalize(encoder(x) - centre, dim=1) for x in (here, near, antipode)]
    assert float(e[0] @ e[1].T) > 0.99  # nearby coordinates give similar vectors
    assert float(e[0] @ e[2].T) < 0.5  # antipodes dissimilar


def test_fusion_mercator_projection_range() -> None:
    xy = mercator_projection(torch.tensor([[0.0, 0.0], [85.05112878, 180.0], [-90.0, -180.0]]))
    assert torch.allclose(xy[0], torch.zeros(2))
    assert np.allclose(xy[1].numpy(), [1.0, 1.0], atol=1e-4) and np.allclose(xy[2].numpy(), [-1.0, -1.0], atol=1e-4)


def test_fusion_bad_configs_are_clear() -> None:
    with pytest.raises(ValueError, match="divisible"):
        small_config(dim=30, heads=4)
    no_seg = SPEC.model_copy(update={"seg_backend": None, "seg_labels": ()})
    with pytest.raises(ConfigError, match="class maps"):
        FusionModel(no_seg, small_config())
    with pytest.raises(ConfigError, match="text"):
        FusionModel(SPEC, small_config(use_text=True))
    model = FusionModel(SPEC, small_config())
    tokens, pooled, _ = inputs(1)
    with pytest.raises(ConfigError, match="class map"):
        model(tokens, pooled, None)


def test_fusion_gps_init_from_geoclip_reproduces_geoclips_location_encoder() -> None:
    from retrieval_service.retrieval.geoclip_heads import GeoClipHeads

    encoder = make_gps_encoder(FusionConfig(gps_init="geoclip")).eval()
    coords = np.array([[48.85, 2.35], [-33.9, 151.2], [0.0, 0.0]], np.float32)
    with torch.no_grad():
        ours = torch.nn.functional.normalize(encoder(torch.from_numpy(coords)), dim=1).numpy()
    assert np.allclose(ours, GeoClipHeads(torch.device("cpu")).encode_locations(coords), atol=1e-5)
    with pytest.raises(ConfigError, match="GeoCLIP's location-encoder shape"):
        make_gps_encoder(FusionConfig(gps_init="geoclip", embed_dim=256))
