"""Data-parallel training under ``torchrun`` (gloo on CPU): two processes with half the batch each
train the same model as one process with the whole batch (the contrastive batch is the global
batch: gathered negatives), and a run whose rank was killed resumes on every rank from rank 0's
checkpoint. Also: the validation cadence, and features read from an fsspec URL through the cache."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from retrieval_service.core.errors import ConfigError
from retrieval_service.fusion import distributed as dist
from retrieval_service.fusion.config import FusionConfig
from retrieval_service.fusion.features import FeatureSet
from retrieval_service.fusion.model import FusionModel
from retrieval_service.fusion.synthetic import write_synthetic_features
from retrieval_service.fusion.trainer import FusionTrainer
from tests.retrieval_service.fusion.test_fusion_training import train_config
from tests.waiting import GUARD_S, wait_for

REPO = Path(__file__).resolve().parents[3]
MODEL = dict(dim=32, embed_dim=32, heads=4, layers=1, dropout=0.0, queue_size=16, rff_features=32, gps_hidden=64)
# over test_fusion_training's train_config
TRAIN = dict(epochs=2, batch_size=16, warmup_steps=2, val_fraction=0.1, checkpoint_every=3, log_every=1)
CLI = [  # the same model and training as MODEL and TRAIN
    *("--dim", "32", "--embed-dim", "32", "--heads", "4", "--layers", "1", "--dropout", "0", "--queue-size", "16"),
    *("--rff-features", "32", "--gps-hidden", "64"),
    *("--batch-size", "16", "--epochs", "2", "--lr", "3e-3", "--warmup-steps", "2", "--val-fraction", "0.1"),
    *("--val-gallery", "train", "--checkpoint-every", "3", "--log-every", "1", "--json"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(features: Path, out: Path) -> subprocess.Popen:
    env = os.environ | {
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO),
        "GEOAGENT_DEVICE": "cpu",
        "GEOAGENT_FUSION_WORKERS": "0",
        "GLOO_SOCKET_IFNAME": "lo",  # loopback only: no interface lookup by host name
    }
    env.pop("GEOAGENT_CONFIG", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1"]
    command += ["--master_port", str(free_port()), "-m", "agent.cli", "train", "fusion", str(features), "--out", str(out), *CLI]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def rank_pid(launcher: subprocess.Popen, rank: int) -> int | None:
    """The pid of the worker with RANK=rank among the launcher's children (None until it runs)."""
    try:
        children = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split()
        for pid in children:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            if f"RANK={rank}".encode() in environ:
                return int(pid)
    except OSError:
        return None
    return None


@pytest.mark.slow
def test_two_gloo_processes_with_half_batches_train_like_one_process_and_resume_after_a_killed_rank(tmp_path: Path) -> None:
    features = write_synthetic_features(tmp_path / "features", rows=200, view="image")
    single = FusionTrainer(features, tmp_path / "one", FusionConfig(**MODEL), train_config(**TRAIN), device="cpu").run()

    killed = torchrun(features.root, tmp_path / "two")
    wait_for((tmp_path / "two" / "state.pt").is_file, "the first checkpoint of the 2-process run", proc=killed)
    pid = wait_for(lambda: rank_pid(killed, 1), "the rank-1 worker", proc=killed)
    os.kill(pid, signal.SIGKILL)  # one rank dies; torchrun stops the other
    killed.communicate(timeout=GUARD_S)
    assert killed.returncode != 0
    resumed = torchrun(features.root, tmp_path / "two")
    out, err = resumed.communicate(timeout=GUARD_S)
    assert resumed.returncode == 0, err[-3000:]
    result = json.loads(out.strip().splitlines()[-1])  # rank 0 alone prints
    assert 0 < result["resumed_from_step"] < result["steps"] == single.steps

    one = pd.read_csv(tmp_path / "one" / "train.csv")
    two = pd.read_csv(tmp_path / "two" / "train.csv")
    assert two["step"].tolist() == one["step"].tolist()  # the logs read as one run
    for column in ("loss_total", "loss_fused", "loss_seg"):
        assert np.allclose(two[column], one[column], rtol=1e-4, atol=1e-5), column
    start = FusionModel(features.spec, FusionConfig(**MODEL)).state_dict()
    a = torch.load(tmp_path / "one" / "fusion.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "two" / "fusion.pt", weights_only=False)["state_dict"]
    for key in a:  # Adam turns float noise in near-zero gradients into lr-sized steps: compare with what training moved
        moved = (a[key].float() - start[key].float()).norm()
        assert (a[key].float() - b[key].float()).norm() <= 1e-3 * moved + 1e-6, key
    state = torch.load(tmp_path / "two" / "state.pt", weights_only=False)
    assert state["world_size"] == 2 and len(state["rng_ranks"]) == 2
    assert torch.equal(state["queue"]["coords"], torch.load(tmp_path / "one" / "state.pt", weights_only=False)["queue"]["coords"])


def test_the_rank_plan_splits_each_global_batch_into_contiguous_blocks() -> None:
    train_idx = np.arange(100)
    whole = dist.RankBatchPlan(train_idx, 8, seed=3, world=dist.World())
    parts = [dist.RankBatchPlan(train_idx, 8, seed=3, world=dist.World(rank=r, size=2)) for r in range(2)]
    for epoch, number in ((0, 0), (1, 5), (2, 11)):
        joined = np.concatenate([p.batch(epoch, number) for p in parts])
        assert (joined == whole.batch(epoch, number)).all()
    assert parts[0].steps_per_epoch == whole.steps_per_epoch == 12
    with pytest.raises(ConfigError, match="divisible by 3"):
        dist.RankBatchPlan(train_idx, 8, seed=3, world=dist.World(rank=0, size=3))
    assert dist.World.from_env({}) == dist.World()
    assert dist.World.from_env({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}).rows(5) == slice(5, 10)
    with pytest.raises(ConfigError, match="not below"):
        dist.World.from_env({"RANK": "4", "WORLD_SIZE": "4"})


def test_validation_runs_every_k_epochs_on_a_gallery_sample_and_on_the_whole_gallery_at_the_end(tmp_path: Path) -> None:
    features = write_synthetic_features(tmp_path / "f", rows=240, view="image")
    train = train_config(**(TRAIN | {"epochs": 5, "val_every": 2, "val_gallery_sample": 50, "val_fraction": 0.2}))
    result = FusionTrainer(features, tmp_path / "run", FusionConfig(**MODEL), train, device="cpu").run()
    validated = [row for row in result.validation if "acc_750km" in row]
    assert [row["epoch"] for row in validated] == [2, 4, 5]  # every 2nd epoch, and the last
    assert all(row["gallery"] == 50 for row in validated)
    assert "full_acc_750km" in validated[-1] and validated[-1]["full_gallery"] > 50
    assert "full_acc_750km" not in validated[0]
    log = pd.read_csv(tmp_path / "run" / "validation.csv")
    assert log["gallery"].tolist() == [50, 50, 50, validated[-1]["full_gallery"]]


def test_features_from_an_fsspec_url_train_like_local_ones_through_the_cache(tmp_path: Path) -> None:
    local = write_synthetic_features(tmp_path / "f", rows=120, view="image", shard_size=32)
    remote = FeatureSet(f"file://{local.root}", cache_dir=tmp_path / "cache")
    assert remote.files.remote and remote.missing_shards() == [] and len(remote) == 120
    assert not list((tmp_path / "cache").rglob("*.npy"))  # nothing fetched before a batch needs it
    idx = np.array([5, 70, 33, 40])
    assert all(np.array_equal(remote.take(idx)[k], local.take(idx)[k]) for k in ("tokens", "pooled", "classmap"))
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 3 * 3  # the three shards the rows live in, three arrays each
    train = train_config(**(TRAIN | {"epochs": 1}))
    a = FusionTrainer(local, tmp_path / "a", FusionConfig(**MODEL), train, device="cpu").run()
    b = FusionTrainer(remote, tmp_path / "b", FusionConfig(**MODEL), train, device="cpu").run()
    wa = torch.load(a.model_path, weights_only=False)["state_dict"]
    wb = torch.load(b.model_path, weights_only=False)["state_dict"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    from retrieval_service.core.errors import DatasetError

    with pytest.raises(DatasetError, match="no precomputed features"):
        FeatureSet(f"file://{tmp_path / 'nothing'}", cache_dir=tmp_path / "cache")
    with pytest.raises(DatasetError, match="fsspec package"):
        FeatureSet("nosuchprotocol://bucket/features", cache_dir=tmp_path / "cache")


def test_mixed_precision_is_cuda_only_and_a_lone_rank_is_told_to_use_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    from retrieval_service.fusion.step import amp_dtype

    assert amp_dtype(True, torch.device("cpu")) is None and amp_dtype(False, torch.device("cpu")) is None
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="process group of 2") as error:
        dist.init(dist.World(rank=0, size=2), torch.device("cpu"))
    assert "torchrun" in error.value.hint
