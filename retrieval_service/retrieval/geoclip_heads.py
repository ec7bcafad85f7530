"""GeoCLIP's image head, location encoder, logit scale and 100K GPS gallery, rebuilt here.

The architecture follows GeoCLIP (Vivanco et al., NeurIPS 2023) as shipped in the MIT-licensed
``geoclip`` wheel; only its weight files and gallery CSV are read (located through
``importlib.metadata``), the package itself is never imported (it pulls in transformers and hub code).
"""

from __future__ import annotations

import logging
import math
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from retrieval_service.core.errors import ModelMismatchError, WeightsNotFoundError

logger = logging.getLogger(__name__)

IMAGE_HEAD_IN = 768
GPS_DIM = 512
SIGMAS = (2.0**0, 2.0**4, 2.0**8)

# Equal Earth projection constants (Šavrič, Patterson, Jenny 2018), scaled as GeoCLIP does.
_A1, _A2, _A3, _A4 = 1.340264, -0.081106, 0.000893, 0.003796
_SF = 66.50336


def geoclip_files() -> dict[str, Path]:
    """Paths of the GeoCLIP weight files and gallery inside the installed ``geoclip`` wheel."""
    try:
        dist = distribution("geoclip")
    except PackageNotFoundError as exc:
        raise WeightsNotFoundError(
            "the geoclip package (GeoCLIP weights) is not installed", "pip install geoclip==1.3.0"
        ) from exc
    root = Path(str(dist.locate_file("geoclip"))) / "model"
    files = {
        "image_head": root / "weights" / "image_encoder_mlp_weights.pth",
        "location_encoder": root / "weights" / "location_encoder_weights.pth",
        "logit_scale": root / "weights" / "logit_scale_weights.pth",
        "gallery": root / "gps_gallery" / "coordinates_100K.csv",
    }
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise WeightsNotFoundError(
            f"GeoCLIP files missing: {', '.join(missing)}", "reinstall: pip install --force-reinstall geoclip==1.3.0"
        )
    return files


def equal_earth_projection(latlon: torch.Tensor) -> torch.Tensor:
    """(n, 2) degrees lat/lon -> (n, 2) Equal Earth x/y, scaled by SF/180 like GeoCLIP."""
    lat = torch.deg2rad(latlon[:, 0])
    lon = torch.deg2rad(latlon[:, 1])
    theta = torch.asin((math.sqrt(3.0) / 2) * torch.sin(lat))
    denom = 3 * (9 * _A4 * theta**8 + 7 * _A3 * theta**6 + 3 * _A2 * theta**2 + _A1)
    x = (2 * math.sqrt(3.0) * lon * torch.cos(theta)) / denom
    y = _A4 * theta**9 + _A3 * theta**7 + _A2 * theta**3 + _A1 * theta
    return torch.stack((x, y), dim=1) * _SF / 180


class GaussianEncoding(nn.Module):
    """Random Fourier features: [cos(2π v Bᵀ), sin(2π v Bᵀ)] with a fixed B (loaded from weights)."""

    def __init__(self, sigma: float, input_size: int = 2, encoded_size: int = 256) -> None:
        super().__init__()
        self.b = nn.Parameter(torch.randn(encoded_size, input_size) * sigma, requires_grad=False)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        vp = 2 * math.pi * v @ self.b.T
        return torch.cat((torch.cos(vp), torch.sin(vp)), dim=-1)


class LocationCapsule(nn.Module):
    """One scale of the location encoder: RFF(σ) -> 3×(Linear 1024 + ReLU) -> Linear 512."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.capsule = nn.Sequential(
            GaussianEncoding(sigma),
            nn.Linear(512, 1024),
            nn.ReLU(),
            nn.Linear(1024, 1024),
            nn.ReLU(),
            nn.Linear(1024, 1024),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Linear(1024, GPS_DIM))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.capsule(x))


class LocationEncoder(nn.Module):
    """GeoCLIP's GPS encoder: Equal Earth projection, then the sum of three RFF capsules (σ = 1, 16, 256)."""

    def __init__(self, sigmas: tuple[float, ...] = SIGMAS) -> None:
        super().__init__()
        for i, sigma in enumerate(sigmas):
            self.add_module(f"LocEnc{i}", LocationCapsule(sigma))
        self.n = len(sigmas)

    def forward(self, latlon: torch.Tensor) -> torch.Tensor:
        x = equal_earth_projection(latlon)
        return sum(self._modules[f"LocEnc{i}"](x) for i in range(self.n))  # type: ignore[misc]


def image_head() -> nn.Sequential:
    """GeoCLIP's image MLP: 768 -> 768 -> ReLU -> 512, on raw projected CLIP ViT-L/14 features."""
    return nn.Sequential(nn.Linear(IMAGE_HEAD_IN, IMAGE_HEAD_IN), nn.ReLU(), nn.Linear(IMAGE_HEAD_IN, GPS_DIM))


class GeoClipHeads:
    """The loaded heads on one device, with numpy in / L2-normalised numpy out; ``scale`` is
    GeoCLIP's learned softmax temperature ``exp(logit_scale)``."""

    def __init__(self, device: torch.device, batch_size: int = 8192) -> None:
        files = geoclip_files()
        self.device = device
        self.batch_size = batch_size
        self.image_head = image_head()
        self.image_head.load_state_dict(torch.load(files["image_head"], map_location="cpu", weights_only=True))
        self.location_encoder = LocationEncoder()
        self.location_encoder.load_state_dict(torch.load(files["location_encoder"], map_location="cpu", weights_only=True))
        logit_scale = torch.load(files["logit_scale"], map_location="cpu", weights_only=True)
        self.logit_scale = float(logit_scale)
        # GeoCLIP's learned temperature: logits = exp(logit_scale) * cos(image, location) (~39.7),
        # computed in float32 as GeoCLIP does, then softmax over the gallery.
        self.scale = float(logit_scale.float().exp())
        self.image_head.to(device).eval()
        self.location_encoder.to(device).eval()

    def embed_clip_features(self, feats: np.ndarray) -> np.ndarray:
        """(n, 768) raw CLIP features -> (n, 512) L2-normalised GPS-space image embeddings."""
        if feats.ndim != 2 or feats.shape[1] != IMAGE_HEAD_IN:
            raise ModelMismatchError(
                f"GeoCLIP's image head takes {IMAGE_HEAD_IN}-d CLIP ViT-L/14 features, the backbone gives {feats.shape[-1]}-d",
                "use GEOAGENT_IMAGE_MODEL=ViT-L-14 with GEOAGENT_IMAGE_PRETRAINED=openai (or another 768-d backbone), "
                "or train a head for this backbone",
            )
        with torch.inference_mode():
            out = self.image_head(torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)).to(self.device))
            out = nn.functional.normalize(out, dim=1)
        return out.cpu().numpy()

    def encode_locations(self, coords: np.ndarray) -> np.ndarray:
        """(n, 2) lat/lon degrees -> (n, 512) L2-normalised location embeddings."""
        coords = np.asarray(coords, dtype=np.float32).reshape(-1, 2)
        out: list[np.ndarray] = []
        with torch.inference_mode():
            for start in range(0, len(coords), self.batch_size):
                batch = torch.from_numpy(coords[start : start + self.batch_size]).to(self.device)
                emb = nn.functional.normalize(self.location_encoder(batch), dim=1)
                out.append(emb.float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, GPS_DIM), dtype=np.float32)


@lru_cache(maxsize=1)
def gallery_coordinates() -> np.ndarray:
    """The 100K GeoCLIP gallery as an (n, 2) float32 array of lat, lon."""
    frame = pd.read_csv(geoclip_files()["gallery"])
    return frame[["LAT", "LON"]].to_numpy(dtype=np.float32)
