"""Shared fixtures: a tiny random open_clip model (768-d, fits the GeoCLIP head), settings in a
temporary data dir, and the real assets in ../shared (tests that need them skip when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test with the reason when it is not there."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real asset {path} is absent (../shared is not beside the checkout)")
    return path


@pytest.fixture(scope="session")
def tiny_model_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An open_clip model config JSON for a tiny ViT whose output is 768-d (GeoCLIP's head input)."""
    from retrieval_service.retrieval.tiny_clip import write_tiny_config

    return write_tiny_config(tmp_path_factory.mktemp("models"))


@pytest.fixture()
def tiny_env(tiny_model_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for the tiny random model and an empty data dir (also for subprocesses)."""
    env = {
        "GEOAGENT_DATA_DIR": str(tmp_path / "data"),
        "GEOAGENT_IMAGE_MODEL": str(tiny_model_config),
        "GEOAGENT_IMAGE_PRETRAINED": "none",
        "GEOAGENT_DEVICE": "cpu",
    }
    for key in ("GEOAGENT_QDRANT_URL", "GEOAGENT_LLM_MODEL", "GEOAGENT_CONFIG"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture()
def tiny_settings(tiny_env: dict[str, str]):
    from agent.settings import load_settings

    return load_settings()


@pytest.fixture(scope="session")
def dev_images() -> Path:
    return shared_path("data", "im2gps3k-dev", "images")


@pytest.fixture(scope="session")
def dev_labels() -> Path:
    return shared_path("data", "im2gps3k-dev", "labels.csv")


@pytest.fixture(scope="session")
def exif_dir() -> Path:
    return shared_path("data", "exif-gps")


@pytest.fixture(scope="session")
def cityscapes_dir() -> Path:
    return shared_path("models", "cityscapes-deeplab")


# ---------------------------------------------------------------------------------------------
# Retrieval fixtures (issue 2): the real 100K GeoCLIP gallery, built once per test session.


@pytest.fixture(scope="session")
def gallery_data_dir(request: pytest.FixtureRequest) -> Path:
    """A data dir whose GPS gallery collection is already built (real GeoCLIP location encoder,
    100K points, country codes). Built once (~60 s on 2 busy CPU cores, exact-scan index instead
    of HNSW) and kept in pytest's cache dir, keyed by the GeoCLIP weights fingerprint, so later
    sessions reuse it; concurrent sessions wait for the one building it. Read-only: use ``gallery_env``."""
    import time

    import torch

    from agent.settings import Settings
    from retrieval_service.core.errors import StoreError
    from retrieval_service.retrieval.gallery import ensure_gallery, gallery_ready, load_gallery_index, weights_fingerprint
    from retrieval_service.retrieval.geoclip_heads import GeoClipHeads
    from retrieval_service.retrieval.stores import EdgeStore
    from tests.waiting import GUARD_S

    name = f"geoagent-gallery-v2-{weights_fingerprint()}"
    cache = getattr(request.config, "cache", None)  # absent with -p no:cacheprovider
    data_dir = Path(cache.mkdir(name)) if cache is not None else request.getfixturevalue("tmp_path_factory").mktemp(name)
    settings = Settings(data_dir=data_dir, qdrant_url=None)
    store = EdgeStore(settings.embedded_qdrant_path, build_index=False)
    heads = GeoClipHeads(torch.device("cpu"))
    guard = time.monotonic() + GUARD_S  # the other session's build ending is the event; this only stops a hang
    try:
        while True:
            try:
                ensure_gallery(settings, store, heads)
                break
            except StoreError:  # another test session is building it right now
                if time.monotonic() > guard:
                    raise
                time.sleep(2)
        assert gallery_ready(settings, store)
        load_gallery_index(settings, heads)  # the vectors for exact search, cached beside it
    finally:
        store.close()
    return data_dir


@pytest.fixture()
def gallery_env(
    gallery_data_dir: Path, tiny_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Like ``tiny_env`` (tiny random image model, cpu) but with a fresh per-test data dir that
    already holds the built GPS gallery (linked read-only from ``gallery_data_dir``), so search
    works at once and anything a test writes (an image database, sessions) stays in that test."""
    from agent.settings import Settings
    from retrieval_service.retrieval.gallery import gallery_name

    shared = Settings(data_dir=gallery_data_dir, qdrant_url=None)
    data_dir = tmp_path / "gallery-env-data"
    (data_dir / "qdrant").mkdir(parents=True)
    name = gallery_name(shared)  # complete, as its own metadata records
    (data_dir / "qdrant" / name).symlink_to(shared.embedded_qdrant_path / name)
    for cached in gallery_data_dir.glob(f"{shared.gallery_collection}.*.npz"):  # exact-search vectors
        (data_dir / cached.name).symlink_to(cached)
    env = dict(tiny_env, GEOAGENT_DATA_DIR=str(data_dir))
    monkeypatch.setenv("GEOAGENT_DATA_DIR", str(data_dir))
    return env


@pytest.fixture()
def gallery_settings(gallery_env: dict[str, str]):
    from agent.settings import load_settings

    return load_settings()
