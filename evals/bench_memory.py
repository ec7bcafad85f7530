"""Benchmark: peak memory of `geoagent locate --mode retrieval` against the `geoclip` package's on one photo.

    python -m evals.bench_memory [--photo PATH] [--work-dir DIR]

No CLIP weights can be downloaded here, so both sides get one random-weight ViT-L/14 from a local
file, as a user with the real weights would: geoagent an open_clip checkpoint
(``ViT-L-14-quickgelu``, ``torch.save`` of its state dict, ``GEOAGENT_IMAGE_PRETRAINED``), the
``geoclip`` package a Hugging Face CLIP folder of GeoCLIP's own ViT-L/14 configuration (its
``CLIPModel.from_pretrained``, what ``GeoCLIP()`` does with the hub's copy). Weights' values do not
change memory. Each side runs in its own process (geoagent: the CLI, ``locate --mode retrieval
--json``, gallery vectors already cached in the data dir as after a first start; geoclip:
``GeoCLIP(...).predict(photo, top_k=5)``), and its peak resident set size (``ru_maxrss`` from
``wait4``, memory-mapped file pages included) is printed with the ratio geoagent / geoclip (target <= 1).
The files (2 x 1.7 GB) are built once in the work dir and reused.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETUP = r"""
import sys
from pathlib import Path

import torch

work = Path(sys.argv[1])
ckpt, hf_dir, data_dir = work / "vit_l14_quickgelu_random.pt", work / "hf-clip", work / "data"
if not ckpt.is_file():
    import open_clip

    torch.manual_seed(0)
    torch.save(open_clip.create_model("ViT-L-14-quickgelu", pretrained=None).state_dict(), work / "tmp.pt")
    (work / "tmp.pt").rename(ckpt)
if not (hf_dir / "config.json").is_file():
    from geoclip.model.image_encoder import ImageEncoder
    from transformers import CLIPImageProcessor

    torch.manual_seed(0)
    ImageEncoder(from_pretrained=False).CLIP.save_pretrained(hf_dir)  # GeoCLIP's ViT-L/14 config, random
    CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}).save_pretrained(hf_dir)
from retrieval_service.retrieval.gallery import load_gallery_index
from retrieval_service.retrieval.geoclip_heads import GeoClipHeads
from retrieval_service.retrieval.settings import RetrievalSettings

load_gallery_index(RetrievalSettings(data_dir=data_dir, qdrant_url=None), GeoClipHeads(torch.device("cpu")))
"""

GEOCLIP = r"""
import sys

from geoclip import GeoCLIP

model = GeoCLIP(from_pretrained=True, clip_path=sys.argv[1]).eval()
gps, prob = model.predict(sys.argv[2], top_k=5)
print(f"geoclip top-1 {gps[0].tolist()} p={float(prob[0]):.4f}")
"""


def peak_rss_mb(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(peak RSS in MB, seconds, the last line of output) of one command in its own process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}):\n{output[-3000:]}")
    lines = [line for line in output.splitlines() if line.strip()]
    return usage.ru_maxrss / 1024, seconds, (lines[-1] if lines else "")


def default_photo() -> Path | None:
    images = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "im2gps3k-dev" / "images"
    found = sorted(images.glob("*.jpg")) if images.is_dir() else []
    return found[0] if found else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photo", type=Path, default=None, help="the photo (default: the first IM2GPS3k dev photo in ../shared)")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="where the two random ViT-L/14 files (3.4 GB) and the gallery cache are kept (default: a temp dir)",
    )
    args = parser.parse_args(argv)
    photo = args.photo or default_photo()
    if photo is None or not photo.is_file():
        raise SystemExit("no photo: pass --photo PATH (the IM2GPS3k dev photos in ../shared are the default)")
    work = (args.work_dir or Path(tempfile.mkdtemp(prefix="geoagent-bench-memory-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    print(f"building / reusing the random ViT-L/14 files in {work} ...", flush=True)
    subprocess.run([sys.executable, "-c", SETUP, str(work)], env=env, check=True, capture_output=True)

    geoagent_env = dict(
        env,
        GEOAGENT_DATA_DIR=str(work / "data"),
        GEOAGENT_IMAGE_MODEL="ViT-L-14-quickgelu",
        GEOAGENT_IMAGE_PRETRAINED=str(work / "vit_l14_quickgelu_random.pt"),
        GEOAGENT_DEVICE="cpu",
    )
    ours, ours_s, ours_out = peak_rss_mb(
        [sys.executable, "-m", "agent.cli", "locate", str(photo), "--mode", "retrieval", "--json"], geoagent_env
    )
    theirs, theirs_s, theirs_out = peak_rss_mb([sys.executable, "-c", GEOCLIP, str(work / "hf-clip"), str(photo)], env)
    print(f"photo: {photo.name}; one random-weight ViT-L/14 from a local file on each side, CPU")
    print(f"{'':44s} {'peak RSS':>10s} {'wall':>7s}")
    print(f"{'geoagent locate --mode retrieval (CLI)':44s} {ours:8.0f} MB {ours_s:6.1f}s")
    print(f"{'geoclip GeoCLIP(clip_path=...).predict':44s} {theirs:8.0f} MB {theirs_s:6.1f}s")
    print(f"peak memory geoagent / geoclip = {ours / theirs:.2f} (target <= 1.00)")
    print(f"  geoagent: {ours_out[:160]}")
    print(f"  {theirs_out[:160]}")


if __name__ == "__main__":
    main()
