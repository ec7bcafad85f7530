"""Fixtures for the HTTP service: one in-process Retriever over the real 100K gallery (tiny random
CLIP), served by the retrieval app on a loopback port for the whole module, and a client of it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.waiting import GUARD_S


def linked_gallery_dir(gallery_data_dir: Path, target: Path) -> Path:
    """A fresh data dir whose qdrant folder links the prebuilt (complete) gallery collection, with the
    exact-search vectors beside it (else each module encodes the 100K gallery again, ~2 minutes)."""
    from agent.settings import Settings
    from retrieval_service.retrieval.gallery import gallery_name

    shared = Settings(data_dir=gallery_data_dir, qdrant_url=None)
    (target / "qdrant").mkdir(parents=True)
    name = gallery_name(shared)
    (target / "qdrant" / name).symlink_to(shared.embedded_qdrant_path / name)
    for cached in gallery_data_dir.glob(f"{shared.gallery_collection}.*.npz"):
        (target / cached.name).symlink_to(cached)
    return target


def gallery_linked_settings(gallery_data_dir: Path, tiny_model_config: Path, target: Path, **overrides: Any) -> Any:
    """Settings for the tiny random CLIP over the prebuilt gallery, in a fresh data dir ``target``
    (no server, no retrieval service, no LMM)."""
    from agent.settings import Settings

    return Settings(
        data_dir=linked_gallery_dir(gallery_data_dir, target),
        qdrant_url=None,
        image_model=str(tiny_model_config),
        image_pretrained="none",
        device="cpu",
        retrieval_url=None,
        llm_model=None,
        **overrides,
    )


@pytest.fixture(scope="module")
def module_settings(gallery_data_dir: Path, tiny_model_config: Path, tmp_path_factory: pytest.TempPathFactory):
    return gallery_linked_settings(gallery_data_dir, tiny_model_config, tmp_path_factory.mktemp("service") / "data")


@pytest.fixture(scope="module")
def inprocess(module_settings):
    from retrieval_service.retrieval.retriever import Retriever

    retriever = Retriever(module_settings)
    retriever.warm_up()
    yield retriever
    retriever.close()


def make_service_settings(**overrides):
    from retrieval_service.service.settings import ServiceSettings

    # a request's deadline (its wait in the queue included) guards against a hang; it is not the expected time
    return ServiceSettings(**{"service_max_concurrency": 4, "service_timeout_s": GUARD_S, **overrides})


@pytest.fixture(scope="module")
def served(inprocess, module_settings) -> Iterator[str]:
    from retrieval_service.service.app import create_retrieval_app
    from retrieval_service.service.server import BackgroundServer

    # the service stores each upload, checked, as one Photo under its data dir's cache
    app = create_retrieval_app(inprocess, make_service_settings(data_dir=module_settings.data_dir / "service"), warm_up=False)
    with BackgroundServer(app, start_timeout_s=GUARD_S) as url:
        yield url


@pytest.fixture(scope="module")
def remote(module_settings, served):
    from retrieval_service.service.client import RetrievalClient

    client = RetrievalClient(module_settings.model_copy(update={"retrieval_url": served, "retrieval_timeout_s": GUARD_S}))
    yield client
    client.close()


@pytest.fixture(params=["inprocess", "http"])
def any_retriever(request, inprocess, remote):
    """The same behavioural suite runs against the in-process Retriever and the HTTP client."""
    return inprocess if request.param == "inprocess" else remote


@pytest.fixture(scope="module")
def resolve(tmp_path_factory: pytest.TempPathFactory):
    """Photo inputs resolved once, at the boundary, as the agent and the tools do before retrieving."""
    from retrieval_service.core.photo import Photo

    cache = tmp_path_factory.mktemp("photos")
    return lambda src: Photo.resolve(src, cache)
