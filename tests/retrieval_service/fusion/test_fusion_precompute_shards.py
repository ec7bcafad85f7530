"""Precompute split over processes: the same features bit for bit with 1 or 2 DataLoader workers
and however the shards are split; a killed process resumes its own shards; folders written apart
merge into one set. Tiny random CLIP and generated photos (no benchmark photo)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retrieval_service.core.errors import ConfigError, DatasetError
from retrieval_service.fusion.features import FeatureSet, merge_features
from retrieval_service.fusion.precompute import parse_shard, precompute, shard_rows
from tests.waiting import GUARD_S, wait_for

REPO = Path(__file__).resolve().parents[3]
SHARD = 8
ARRAYS = ("tokens", "pooled", "ok")


def make_photos(root: Path, count: int, missing: int = 17, big: tuple[int, ...] = ()) -> tuple[Path, Path]:
    """``count`` generated photos (sizes and colours vary), one of them missing; the ``big`` ones are
    5000 x 5000 PNGs (0.2 MB, about a second each to decode: a window to kill a process in)."""
    stripes = np.repeat(np.linspace(0, 255, 5000).astype(np.uint8)[None, :, None], 3, axis=2).repeat(5000, axis=0)
    stripes[::7, :, 1] = 30
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    lines = ["IMG_ID,LAT,LON"]
    for i in range(count):
        h, w = int(rng.integers(40, 120)), int(rng.integers(40, 120))
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        if i in big and i != big[0]:
            shutil.copyfile(images / f"p{big[0]}.jpg", images / f"p{i}.jpg")
        elif i in big:
            Image.fromarray(stripes).save(images / f"p{i}.jpg", format="PNG", compress_level=1)
        elif i != missing:
            Image.fromarray(pixels).save(images / f"p{i}.jpg", quality=90)
        lines.append(f"p{i}.jpg,{rng.uniform(-60, 60):.4f},{rng.uniform(-170, 170):.4f}")
    csv = root / "photos.csv"
    csv.write_text("\n".join(lines) + "\n")
    return csv, images


@pytest.fixture()
def photos(tmp_path: Path) -> tuple[Path, Path]:
    """90 photos: 12 shards of 8."""
    return make_photos(tmp_path, 90)


def run_precompute(tiny_env: dict, csv: Path, images: Path, out: Path, shard_size: int = SHARD, batch_size: int = 3, **kw):
    return precompute(
        csv,
        images,
        out,
        image_model=tiny_env["GEOAGENT_IMAGE_MODEL"],
        image_pretrained="none",
        device="cpu",
        batch_size=batch_size,
        token_grid=2,
        shard_size=shard_size,
        **kw,
    )


def same_features(a: FeatureSet, b: FeatureSet) -> None:
    assert a.missing_shards() == b.missing_shards() == []
    everything = np.arange(len(a))
    left, right = a.take(everything, ARRAYS), b.take(everything, ARRAYS)
    for name in ARRAYS:
        assert left[name].tobytes() == right[name].tobytes(), name  # bit for bit


@pytest.mark.slow
def test_sharded_precompute_with_one_or_two_workers_equals_the_unsharded_one(tiny_env, photos, tmp_path) -> None:
    csv, images = photos
    whole = run_precompute(tiny_env, csv, images, tmp_path / "whole", workers=1)
    assert whole.shards_written == 12 and whole.unreadable == 1 and whole.shards_missing == 0
    shared = tmp_path / "shared"
    first = run_precompute(tiny_env, csv, images, shared, workers=2, shard=(0, 3))
    assert first.shards_written == 4 and first.shards_missing == 8  # 0, 3, 6, 9; the others are not its
    for index in (1, 2):
        run_precompute(tiny_env, csv, images, shared, workers=0, shard=(index, 3))
    same_features(FeatureSet(tmp_path / "whole"), FeatureSet(shared))

    # written apart (no shared disk), joined by merge
    parts = []
    for index in range(2):
        part = tmp_path / f"part{index}"
        part.mkdir()
        for name in ("manifest.json", "rows.csv"):
            shutil.copy(shared / name, part / name)
        for shard in range(index, 12, 2):
            shutil.copytree(shared / "shards" / f"{shard:05d}", part / "shards" / f"{shard:05d}")
        parts.append(part)
    assert FeatureSet(parts[0]).missing_shards() == list(range(1, 12, 2))
    same_features(FeatureSet(tmp_path / "whole"), merge_features(parts, tmp_path / "merged"))
    assert merge_features(parts, parts[0], move=True).missing_shards() == []  # into one of the parts
    other = tmp_path / "other"
    run_precompute(tiny_env, csv, images, other, workers=0, shard=(0, 12))
    (other / "rows.csv").write_text((other / "rows.csv").read_text().replace("p3.jpg", "q3.jpg"))
    with pytest.raises(DatasetError, match="other rows"):
        merge_features([parts[0], other], tmp_path / "merged2")


@pytest.mark.slow
def test_a_killed_precompute_process_resumes_its_own_shards(tiny_env, tmp_path) -> None:
    """A real kill -9 of ``geoagent train precompute --shard 0/2`` after its first shard; started
    again it computes only what is missing, and the folder equals an unsharded precompute."""
    csv, images = make_photos(tmp_path, 120, big=(32, 33, 34))  # 8 shards of 16: process 0/2 owns 0, 2, 4, 6
    out = tmp_path / "features"
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "agent.cli", "train", "precompute", str(csv), "--images", str(images), "--out", str(out)]
    command += ["--no-segmentation", "--token-grid", "2", "--shard-size", "16", "--batch-size", "8", "--workers", "1"]
    proc = subprocess.Popen([*command, "--shard", "0/2"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for((out / "shards" / "00000").is_dir, "the first shard of process 0/2", proc=proc)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=GUARD_S) == -signal.SIGKILL
    proc.stderr.close()
    done_before = len(FeatureSet(out).files.shard_names())
    assert 1 <= done_before < 4
    again = subprocess.run(
        [*command, "--shard", "0/2", "--json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=GUARD_S
    )
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["shards_reused"] == done_before and summary["shards_written"] == 4 - done_before
    assert summary["shard"] == "0/2" and summary["shards_missing"] == 4
    assert FeatureSet(out).missing_shards() == [1, 3, 5, 7]
    run_precompute(tiny_env, csv, images, out, shard_size=16, batch_size=8, workers=0, shard=(1, 2))  # the other process
    run_precompute(tiny_env, csv, images, tmp_path / "whole", shard_size=16, batch_size=8, workers=0)
    same_features(FeatureSet(tmp_path / "whole"), FeatureSet(out))


def test_shard_arguments_are_checked() -> None:
    assert parse_shard("2/4") == (2, 4)
    assert shard_rows(90, 8, (0, 2)) == 48 and shard_rows(90, 8, (1, 2)) == 42 and shard_rows(90, 8, (0, 1)) == 90
    for bad in ("4/4", "x/2", "1", "-1/3"):
        with pytest.raises(ConfigError, match="--shard"):
            parse_shard(bad)
