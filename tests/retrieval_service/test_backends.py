"""One retrieval back end per encoder family, chosen once from the settings: GeoCLIP by default, a
fusion checkpoint for ``encoder = "fusion:PATH"`` (its own collections, its own GPS head); the
``Retriever`` is written once against the interface, with no branch on the family."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retrieval_service.core.photo import Photo
from retrieval_service.retrieval import retriever as retriever_module
from retrieval_service.retrieval.backends import RetrievalBackend, make_backend
from retrieval_service.retrieval.backends.fusion import FusionBackend
from retrieval_service.retrieval.backends.geoclip import GeoClipBackend
from retrieval_service.retrieval.retriever import Retriever


def tiny_fusion_checkpoint(path: Path, image_model: str) -> Path:
    """A random fusion model over the tiny CLIP (768-d tokens, 2x2 grid, no segmentation view)."""
    from retrieval_service.fusion.checkpoint import save_model
    from retrieval_service.fusion.config import FeatureSpec, FusionConfig
    from retrieval_service.fusion.model import FusionModel

    spec = FeatureSpec(image_model=image_model, image_pretrained="none", token_grid=2, token_dim=768, pooled_dim=768)
    config = FusionConfig(
        dim=16, embed_dim=16, heads=2, layers=1, dropout=0.0, use_segmentation=False, rff_features=16, gps_hidden=32
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(FusionModel(spec, config), path)
    return path


@pytest.fixture()
def fusion_settings(tiny_settings, tiny_env, tmp_path):
    ckpt = tiny_fusion_checkpoint(tmp_path / "run" / "fusion.pt", tiny_env["GEOAGENT_IMAGE_MODEL"])
    gallery = tmp_path / "gallery.csv"
    gallery.write_text("LAT,LON\n" + "\n".join(f"{a},{b}" for a in range(-60, 61, 30) for b in range(-150, 151, 60)) + "\n")
    return tiny_settings.model_copy(update={"encoder": f"fusion:{ckpt}", "fusion_gallery": str(gallery)})


def test_the_factory_picks_geoclip_by_default(tiny_settings):
    from retrieval_service.retrieval.gallery import gallery_name

    backend = make_backend(tiny_settings)
    assert type(backend) is GeoClipBackend and backend.family == "geoclip" and isinstance(backend, RetrievalBackend)
    assert backend.settings.database_collection == tiny_settings.database_collection == "image_database"
    assert backend.gallery_collection == gallery_name(tiny_settings)
    assert backend.gallery_search == "exact"
    assert "encoder" not in backend.__dict__ and "heads" not in backend.__dict__  # nothing loaded
    assert make_backend(tiny_settings.model_copy(update={"gallery_search": "hnsw"})).exact_gallery() is None
    r = Retriever(tiny_settings)
    assert type(r.backend) is GeoClipBackend and r.settings.database_collection == "image_database"


def test_the_factory_picks_the_fusion_back_end_for_a_checkpoint(fusion_settings, tmp_path):
    """Its own fingerprinted collections, exact gallery search with probabilities by default (the
    store's HNSW index when asked), and search + verify end to end with the checkpoint as encoder
    and GPS head."""
    from retrieval_service.fusion.checkpoint import fingerprint

    backend = make_backend(fusion_settings)
    assert type(backend) is FusionBackend and backend.family == "fusion"
    fp = fingerprint(fusion_settings.fusion_checkpoint)
    assert backend.database_collection == backend.settings.database_collection == f"image_database-fusion-{fp}"
    assert backend.gallery_collection.startswith(f"{fusion_settings.gallery_collection}-fusion-")
    assert backend.gallery_search == "exact"
    assert "encoder" not in backend.__dict__  # constructing it loads no model
    hnsw = make_backend(fusion_settings.model_copy(update={"gallery_search": "hnsw"}))
    assert hnsw.gallery_search == "hnsw" and hnsw.exact_gallery() is None

    r = Retriever(fusion_settings.model_copy(update={"gallery_search": "hnsw"}))
    try:
        assert type(r.backend) is FusionBackend and r.settings.database_collection == backend.database_collection
        assert r.info()["gallery_ready"] is False
        photo = Photo.resolve(Image.new("RGB", (64, 64), (200, 60, 40)), tmp_path / "cache")
        result = r.search(photo, k_gallery=3, k_database=2, dissimilar=1)
        assert len(result.gallery) == 3 and result.database == [] and len(result.dissimilar) == 1
        assert all(c.probability is None for c in result.gallery)  # the store's index: no probabilities
        exact_retriever = Retriever(fusion_settings)
        exact = exact_retriever.search(photo, k_gallery=3, k_database=0)
        exact_retriever.close()
        assert [(c.lat, c.lon) for c in exact.gallery] == [(c.lat, c.lon) for c in result.gallery]
        assert all(c.probability is not None for c in exact.gallery) and exact.gallery_rest  # as in the GeoCLIP mode
        assert r.heads is r.encoder and r.gps_embed_images([photo]).shape == (1, 16)
        scores = r.verify(photo, [(c.lat, c.lon) for c in result.gallery])
        assert scores == pytest.approx([c.score for c in result.gallery], abs=1e-4)
        info = r.info()
        assert info["gallery_ready"] is True and info["gallery_search"] == "hnsw" and info["encoder"] == fusion_settings.encoder
        assert info["collections"][r.gallery_collection]["points"] == 30
        assert np.allclose(np.linalg.norm(r.embed_images([photo]), axis=1), 1, atol=1e-5)
    finally:
        r.close()


def test_a_back_end_can_be_given_to_the_retriever(tiny_settings):
    class Fixed(GeoClipBackend):
        family = "test"

    backend = Fixed(tiny_settings)
    assert Retriever(tiny_settings, backend=backend).backend is backend


def test_the_retriever_has_no_branch_on_the_encoder_family():
    """Only the factory knows the families: the Retriever's code (its docstrings aside) names none of
    them, reads no setting that picks one, imports no family's code and never asks which back end it has."""
    tree = ast.parse(inspect.getsource(retriever_module))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    words = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
    }
    words |= {a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    words |= {
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
    }
    for family in ("fusion", "geoclip"):
        assert not [w for w in words if family in w.lower()], family
    assert not words & {"encoder_family", "fusion_checkpoint", "gallery_search", "family"}
    assert "settings.encoder" not in ast.unparse(tree)
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    family_code = (
        "retrieval_service.fusion",
        "retrieval_service.retrieval.gallery",
        "retrieval_service.retrieval.geoclip_heads",
        "retrieval_service.retrieval.image_encoder",
        "retrieval_service.retrieval.backends.",
    )
    assert not [m for m in imported if m and any(m == f or m.startswith(f.rstrip(".") + ".") for f in family_code)]
    checks = [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func) in ("isinstance", "type")]
    assert not [c for c in checks if "backend" in c.lower()], checks
