"""The micro-batcher in front of the image encoder: concurrent callers' photos go through one
forward pass, each caller gets its own rows in order, errors reach every caller of the batch, and
the Retriever's features are the same with and without batching."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from retrieval_service.retrieval.batcher import EncodeBatcher


class SlowEncoder:
    """Rows that say which image they came from; each call takes ``seconds`` (a forward pass)."""

    def __init__(self, seconds: float = 0.05) -> None:
        self.seconds = seconds
        self.calls: list[int] = []
        self.fail = False

    def encode(self, images):
        self.calls.append(len(images))
        time.sleep(self.seconds)
        if self.fail:
            raise RuntimeError("out of memory")
        return np.array([[img.getpixel((0, 0))[0], img.width] for img in images], dtype=np.float32).reshape(-1, 2)


def _img(value: int, width: int = 8) -> Image.Image:
    return Image.new("RGB", (width, 8), (value, 0, 0))


def test_concurrent_callers_share_forward_passes_and_get_their_own_rows():
    """Before: each of 12 concurrent requests encoded its photo alone (12 forward passes)."""
    enc = SlowEncoder()
    batcher = EncodeBatcher(enc.encode, max_batch=8, max_wait_s=0.02)
    start = threading.Barrier(12)

    def one(i: int) -> np.ndarray:
        start.wait()
        return batcher.encode([_img(i), _img(i, 9)])

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(one, range(12)))
    for i, rows in enumerate(results):
        assert rows.tolist() == [[i, 8], [i, 9]]
    assert sum(enc.calls) == 24 and max(enc.calls) <= 8
    assert len(enc.calls) < 12 and batcher.batches == len(enc.calls)
    batcher.close()


def test_a_large_call_is_split_and_an_error_reaches_every_caller():
    enc = SlowEncoder(0.0)
    batcher = EncodeBatcher(enc.encode, max_batch=4, max_wait_s=0.0)
    rows = batcher.encode([_img(i) for i in range(10)])
    assert rows[:, 0].tolist() == list(range(10)) and all(n <= 4 for n in enc.calls)
    assert batcher.encode([]).shape[0] == 0
    enc.fail = True
    with pytest.raises(RuntimeError, match="out of memory"):
        batcher.encode([_img(1)])
    enc.fail = False
    assert batcher.encode([_img(3)]).tolist() == [[3, 8]]  # the worker survived the error
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.encode([_img(1)])


def test_retriever_features_are_the_same_with_and_without_batching(tiny_settings, tmp_path):
    from retrieval_service.core.photo import Photo
    from retrieval_service.retrieval.retriever import Retriever

    photos = []
    for i in range(6):
        path = tmp_path / f"p{i}.jpg"
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(path)
        photos.append(Photo.resolve(path, tmp_path / "cache"))
    plain = Retriever(tiny_settings.model_copy(update={"encode_batching": False}))
    batched = Retriever(tiny_settings.model_copy(update={"encode_batch_wait_ms": 20.0}))
    want = plain.embed_images(photos)
    with ThreadPoolExecutor(6) as pool:
        got = np.stack(list(pool.map(lambda p: batched.embed_images([p])[0], photos)))
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert batched._batcher is not None and batched._batcher.images == 6 and batched._batcher.batches < 6
    batched.close()
    plain.close()
