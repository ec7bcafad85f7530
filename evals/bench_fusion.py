"""Fusion training and indexing speed: precomputed features vs on-the-fly encoding, peak memory,
fusion index build rate.

    python -m evals.bench_fusion                                   # ViT-L-14 tower, random weights
    python -m evals.bench_fusion --image-model ViT-B-32 --images 64 --segmenter-model model.tflite

The frozen tower runs with random weights (``--pretrained none``) unless you name real ones: the
compute per image does not depend on the weight values, so the speed figures hold for the real
model. Photos are generated (random pixels at --size); no benchmark photo is read. Reported:

* training samples/s with precomputed features (read from the memory-mapped shards) and with
  on-the-fly encoding (decode + frozen tower + class maps each step), and their ratio (target >= 10);
* peak memory: the process's maximum RSS, and on CUDA the peak allocated GPU memory;
* fusion index build: images/s through ``index build --encoder fusion:PATH`` (encode + upsert);
* data-parallel training: samples/s of ``geoagent train fusion`` (the default model, batch
  ``--ddp-batch``) launched by ``torchrun`` with 1 and with 2 processes (gloo on CPU, NCCL on GPUs;
  ``--ddp-threads`` torch threads each), on generated features shaped like ViT-L/14's (16 tokens of
  768, a 32 x 32 class map), and the ratio 2 processes / 1. ``--ddp-only`` runs this part alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from retrieval_service.fusion.config import FusionConfig, TrainConfig
from retrieval_service.fusion.features import FeatureSet
from retrieval_service.fusion.precompute import precompute
from retrieval_service.fusion.trainer import FusionTrainer
from retrieval_service.fusion.validation import to_device

logger = logging.getLogger("bench_fusion")


def make_photos(root: Path, n: int, size: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    images = root / "images"
    images.mkdir(parents=True)
    lines = ["IMG_ID,LAT,LON"]
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size * 3 // 4, size, 3), dtype=np.uint8)).save(images / f"b{i}.jpg", quality=90)
        lines.append(f"b{i}.jpg,{rng.uniform(-60, 60):.4f},{rng.uniform(-180, 180):.4f}")
    (root / "photos.csv").write_text("\n".join(lines) + "\n")
    return images


def torchrun_rate(features: Path, out: Path, processes: int, batch: int, steps: int, threads: int, device: str) -> float:
    """Global samples/s of ``geoagent train fusion`` under torchrun with ``processes`` processes."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "GEOAGENT_DEVICE": device, "GEOAGENT_FUSION_WORKERS": "2"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_addr", "127.0.0.1"]
    command += ["--master_port", str(port), "-m", "agent.cli", "train", "fusion", str(features), "--out", str(out)]
    command += ["--batch-size", str(batch), "--max-steps", str(steps), "--log-every", str(max(1, steps // 4))]
    command += ["--val-fraction", "0", "--warmup-steps", "1", "--checkpoint-every", str(10 * steps), "--json"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"torchrun with {processes} processes failed: {done.stderr[-2000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["samples_per_s"])


def distributed_rates(args: argparse.Namespace, root: Path) -> None:
    from retrieval_service.fusion.synthetic import write_synthetic_features

    rows = args.ddp_batch * (args.ddp_steps + 2)
    features = write_synthetic_features(
        root / "ddp-features", rows=rows, token_grid=4, token_dim=768, seg_grid=32, classes=19, shard_size=4096
    )
    rates = {
        n: torchrun_rate(features.root, root / f"ddp-{n}", n, args.ddp_batch, args.ddp_steps, args.ddp_threads, args.device)
        for n in (1, 2)
    }
    print(
        f"data-parallel training (torchrun, default model, global batch {args.ddp_batch}, {args.ddp_steps} steps, "
        f"{args.ddp_threads} torch thread(s) per process, device {args.device}):"
    )
    print(f"  1 process:            {rates[1]:8.1f} samples/s")
    print(f"  2 processes:          {rates[2]:8.1f} samples/s  ({rates[2] / rates[1]:.2f} x one process)")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-model", default="ViT-L-14")
    parser.add_argument(
        "--pretrained", default="none", help="open_clip tag or checkpoint; 'none' = random weights (same compute)."
    )
    parser.add_argument(
        "--segmenter-model", default=None, help="A TFLite segmenter for the class maps; unset = no segmentation view."
    )
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--size", type=int, default=640, help="Width of the generated photos.")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20, help="Training steps timed on precomputed features.")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default).")
    parser.add_argument("--ddp-batch", type=int, default=64, help="Global batch of the data-parallel runs.")
    parser.add_argument("--ddp-steps", type=int, default=12, help="Steps of each data-parallel run.")
    parser.add_argument("--ddp-threads", type=int, default=1, help="torch threads per process in the data-parallel runs.")
    parser.add_argument("--ddp-only", action="store_true", help="Only the 1- vs 2-process training rates.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.ddp_only:
        with tempfile.TemporaryDirectory(prefix="bench-fusion-ddp-") as tmp:
            distributed_rates(args, Path(tmp))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    seg_settings = None
    if args.segmenter_model:
        from retrieval_service.evidence.settings import EvidenceSettings

        seg_settings = EvidenceSettings(segmenter="tflite", segmenter_model=args.segmenter_model)
    with tempfile.TemporaryDirectory(prefix="bench-fusion-") as tmp:
        root = Path(tmp)
        images = make_photos(root, args.images, args.size)
        t0 = time.perf_counter()
        report = precompute(
            root / "photos.csv",
            images,
            root / "features",
            image_model=args.image_model,
            image_pretrained=args.pretrained,
            device=args.device,
            batch_size=args.batch_size,
            segmenter_settings=seg_settings,
            workers=2,
            shard_size=max(16, args.images),
        )
        precompute_s = time.perf_counter() - t0
        features = FeatureSet(root / "features")
        config = FusionConfig(use_segmentation=seg_settings is not None)
        train = TrainConfig(batch_size=args.batch_size, val_fraction=0.0, warmup_steps=1, workers=0, amp=True)
        trainer = FusionTrainer(features, root / "run", config, train, device=args.device, resume=False)
        device = trainer.device
        names = trainer.names
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()

        def sync() -> None:
            if device.type == "cuda":
                torch.cuda.synchronize()

        # precomputed: read the batch from the shards, one optimiser step
        order = np.arange(len(features))
        trainer.train_step(
            to_device(features.take(order[: args.batch_size], names), device),
            torch.from_numpy(features.coords[: args.batch_size]).to(device),
        )  # warm-up
        sync()
        t0 = time.perf_counter()
        for step in range(args.steps):
            idx = np.roll(order, -step * args.batch_size)[: args.batch_size]
            batch = to_device(features.take(idx, names), device)
            trainer.train_step(batch, torch.from_numpy(features.coords[idx]).to(device))
        sync()
        pre_rate = args.steps * args.batch_size / (time.perf_counter() - t0)

        # on the fly: decode, frozen tower (and class maps) for every batch, then the same step
        from retrieval_service.core.media import decode_image
        from retrieval_service.fusion.classmaps import ClassMapper
        from retrieval_service.fusion.tokens import TokenEncoder

        tokens = TokenEncoder(args.image_model, args.pretrained, args.device, args.batch_size, features.spec.token_grid)
        mapper = None
        if seg_settings is not None:
            from retrieval_service.evidence.segmentation import make_segmenter

            mapper = ClassMapper(make_segmenter(seg_settings), features.spec.seg_grid)
        paths = [images / p for p in features.rows["path"]]
        fly_batches = max(1, min(3, len(paths) // args.batch_size))
        sync()
        t0 = time.perf_counter()
        for b in range(fly_batches):
            sel = list(range(b * args.batch_size, (b + 1) * args.batch_size))
            pil = [decode_image(paths[i]) for i in sel]
            tok, pooled = tokens.encode(pil)
            batch = {"tokens": torch.from_numpy(tok).to(device), "pooled": torch.from_numpy(pooled).to(device)}
            if mapper is not None:
                batch["classmap"] = torch.from_numpy(np.stack([mapper(img) for img in pil])).to(device)
            trainer.train_step(batch, torch.from_numpy(features.coords[sel]).to(device))
        sync()
        fly_rate = fly_batches * args.batch_size / (time.perf_counter() - t0)
        gpu_peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None

        # fusion index build through the Retriever (encode + upsert into an embedded store)
        from retrieval_service.fusion.checkpoint import save_model
        from retrieval_service.retrieval.ingest import ingest_csv
        from retrieval_service.retrieval.retriever import Retriever
        from retrieval_service.retrieval.settings import RetrievalSettings

        save_model(trainer.model, root / "run" / "fusion.pt")
        settings = RetrievalSettings(
            data_dir=root / "data",
            encoder=f"fusion:{root / 'run' / 'fusion.pt'}",
            image_model=args.image_model,
            image_pretrained=args.pretrained,
            device=args.device,
            batch_size=args.batch_size,
        )
        retriever = Retriever(settings)
        _ = retriever.encoder  # model loading is not part of the rate (the checkpoint names its own segmenter)
        t0 = time.perf_counter()
        ingest = ingest_csv(retriever, root / "photos.csv", images)
        index_rate = ingest.added / (time.perf_counter() - t0)
        retriever.close()

    print(
        f"device: {device}  tower: {args.image_model}/{args.pretrained}  segmentation view: {seg_settings is not None}  "
        f"batch {args.batch_size}  photos {args.images} at {args.size} px"
    )
    print(f"precompute:             {report.rows / precompute_s:8.1f} images/s  ({report.rows} images in {precompute_s:.1f} s)")
    print(f"train, precomputed:     {pre_rate:8.1f} samples/s  ({args.steps} steps)")
    print(f"train, on the fly:      {fly_rate:8.1f} samples/s  ({fly_batches} steps)")
    print(f"ratio precomputed/fly:  {pre_rate / fly_rate:8.1f} x  (target >= 10)")
    print(f"fusion index build:     {index_rate:8.1f} images/s  ({ingest.added} images)")
    print(
        f"peak RSS:               {peak_rss_mib():8.0f} MiB" + (f"   peak GPU allocated: {gpu_peak:.0f} MiB" if gpu_peak else "")
    )
    with tempfile.TemporaryDirectory(prefix="bench-fusion-ddp-") as tmp:
        distributed_rates(args, Path(tmp))


if __name__ == "__main__":
    main()
