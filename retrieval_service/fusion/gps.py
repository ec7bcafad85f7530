"""GPS encoders: (lat, lon) degrees -> a vector in the shared image/GPS space.

* A projection to the plane: Equal Earth (GeoCLIP) or Web Mercator (G3/DualGeo, divided by the
  half-circumference so that both axes lie in [-1, 1]).
* ``RFFGPSEncoder``: one capsule per scale sigma (random Fourier features with fixed frequencies
  drawn from N(0, sigma^2), then a three-layer MLP and a linear head), summed (GeoCLIP, G3). With
  ``gps_init='geoclip'`` its capsules start from GeoCLIP's trained location encoder.
* ``LocationAttentionGPSEncoder`` (after TransGeoCLIP): the capsules' outputs are one token per
  scale; a learnable location token attends over them through a Transformer encoder, so the model
  learns how much each scale matters where, instead of a fixed sum.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from retrieval_service.core.errors import ConfigError
from retrieval_service.fusion.config import FusionConfig
from retrieval_service.retrieval.geoclip_heads import equal_earth_projection

MERCATOR_MAX_LAT = 85.05112878


def mercator_projection(latlon: torch.Tensor) -> torch.Tensor:
    """(n, 2) degrees -> (n, 2) Web-Mercator x/y divided by the half-circumference (both in [-1, 1])."""
    lat = torch.deg2rad(latlon[:, 0].clamp(-MERCATOR_MAX_LAT, MERCATOR_MAX_LAT))
    x = latlon[:, 1] / 180.0
    y = torch.log(torch.tan(math.pi / 4 + lat / 2)) / math.pi
    return torch.stack((x, y), dim=1)


def project(latlon: torch.Tensor, projection: str) -> torch.Tensor:
    if projection == "equal_earth":
        return equal_earth_projection(latlon)
    if projection == "mercator":
        return mercator_projection(latlon)
    raise ConfigError(f"unknown projection {projection!r}", "use equal_earth or mercator")


class GaussianEncoding(nn.Module):
    """[cos(2 pi v B^T), sin(2 pi v B^T)] with B ~ N(0, sigma^2) fixed (stored, never trained)."""

    def __init__(self, sigma: float, features: int, generator: torch.Generator) -> None:
        super().__init__()
        self.b = nn.Parameter(torch.randn(features, 2, generator=generator) * sigma, requires_grad=False)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        # float32 even under autocast: at sigma = 256 a half-precision phase would be off by radians
        with torch.autocast(device_type=v.device.type, enabled=False):
            vp = 2 * math.pi * v.float() @ self.b.float().T
            return torch.cat((torch.cos(vp), torch.sin(vp)), dim=-1)


class Capsule(nn.Module):
    """One scale: RFF(sigma) -> 3 x (Linear + ReLU) -> Linear. Same layout as GeoCLIP's capsules."""

    def __init__(self, sigma: float, features: int, hidden: int, out: int, generator: torch.Generator) -> None:
        super().__init__()
        self.capsule = nn.Sequential(
            GaussianEncoding(sigma, features, generator),
            nn.Linear(2 * features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Linear(hidden, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.capsule(x))


class _Scales(nn.Module):
    def __init__(self, config: FusionConfig) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(config.seed + 7919)
        self.projection = config.projection
        self.capsules = nn.ModuleList(
            Capsule(s, config.rff_features, config.gps_hidden, config.embed_dim, generator) for s in config.sigmas
        )

    def tokens(self, latlon: torch.Tensor) -> torch.Tensor:
        """(n, scales, embed_dim): one vector per scale."""
        with torch.autocast(device_type=latlon.device.type, enabled=False):
            x = project(latlon.float(), self.projection)
        return torch.stack([capsule(x) for capsule in self.capsules], dim=1)


class RFFGPSEncoder(_Scales):
    """Sum of the per-scale capsules."""

    def forward(self, latlon: torch.Tensor) -> torch.Tensor:
        return self.tokens(latlon).sum(dim=1)


class LocationAttentionGPSEncoder(_Scales):
    """A location token attends over the per-scale tokens (Transformer encoder), then a linear head."""

    def __init__(self, config: FusionConfig) -> None:
        super().__init__(config)
        dim = config.embed_dim
        self.location_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.scale_embedding = nn.Parameter(torch.randn(1, len(config.sigmas), dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            dim, config.heads, dim_feedforward=2 * dim, dropout=config.dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, config.gps_attention_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, dim)

    def forward(self, latlon: torch.Tensor) -> torch.Tensor:
        scales = self.tokens(latlon) + self.scale_embedding
        seq = torch.cat((self.location_token.expand(scales.shape[0], -1, -1), scales), dim=1)
        out = self.encoder(seq)[:, 0]
        return self.head(self.norm(out)) + scales.sum(dim=1)  # residual: starts as the RFF sum


def load_geoclip_capsules(encoder: _Scales, config: FusionConfig) -> None:
    """Copy GeoCLIP's trained location-encoder capsules into ``encoder`` (shapes must match)."""
    from retrieval_service.retrieval.geoclip_heads import SIGMAS, geoclip_files

    wanted = (config.projection, tuple(config.sigmas), config.rff_features, config.gps_hidden, config.embed_dim)
    if wanted != ("equal_earth", SIGMAS, 256, 1024, 512):
        raise ConfigError(
            "gps_init='geoclip' needs GeoCLIP's location-encoder shape "
            f"(equal_earth, sigmas {SIGMAS}, 256 features, hidden 1024, embed_dim 512); got {wanted}",
            "use those settings, or gps_init='random'",
        )
    state = torch.load(geoclip_files()["location_encoder"], map_location="cpu", weights_only=True)
    mapped = {key.replace("LocEnc", "capsules.", 1): value for key, value in state.items()}
    missing, unexpected = encoder.load_state_dict(mapped, strict=False)
    if unexpected or any(k.startswith("capsules.") for k in missing):
        raise ConfigError(
            f"GeoCLIP location weights do not fit: missing {missing}, unexpected {unexpected}", "reinstall geoclip==1.3.0"
        )


def make_gps_encoder(config: FusionConfig) -> _Scales:
    encoder: _Scales = (
        LocationAttentionGPSEncoder(config) if config.gps_encoder == "location_attention" else RFFGPSEncoder(config)
    )
    if config.gps_init == "geoclip":
        load_geoclip_capsules(encoder, config)
    return encoder
