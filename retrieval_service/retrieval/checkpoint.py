"""Loading a local open_clip checkpoint with one copy of the weights in memory, not two.

open_clip's own loading builds the model with random weights (all of them initialised: 1.7 GB and
~15 s for ViT-L/14 on a CPU), reads the whole checkpoint into memory (another 1.7 GB) and copies
it into the model: two copies are resident while loading (geoagent peaked at 4.3 GB against the
``geoclip`` package's 3.1 GB, ``evals/bench_memory.py``). Here the model is built on the meta device
(no memory, no initialisation), the checkpoint is memory-mapped (``torch.load(mmap=True)``;
safetensors files are read once) and its tensors become the model's parameters
(``load_state_dict(assign=True)``): the weights are read from the file as they are used, and the
tower that is never run (the text tower, for image retrieval) is never read at all.

Non-persistent buffers are not in a checkpoint; the causal text mask is rebuilt. A model with any
other one (or a big_vision ``.npz``) is built by open_clip as before, and still loads the file
memory-mapped into it.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

_RANDOM_INIT_MESSAGE = "No pretrained weights loaded for model"


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The checkpoint's state dict, memory-mapped where the format allows (``.pt``/``.bin``/``.pth``
    zip archives) or read once (``.safetensors``); ``state_dict`` wrappers and DDP ``module.``
    prefixes removed, as open_clip's ``load_state_dict`` does."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        checkpoint: Any = load_file(str(path), device="cpu")
    else:
        checkpoint = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    state = checkpoint["state_dict"] if isinstance(checkpoint, dict) and "state_dict" in checkpoint else checkpoint
    if not isinstance(state, dict) or not state:
        raise ValueError(f"{path} holds no state dict")
    if next(iter(state)).startswith("module."):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _massage(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """open_clip's ``load_checkpoint`` conversions (third-party formats, old text layout, logit
    shapes, position-embedding resizing), then each tensor in the dtype the model expects."""
    from open_clip.convert import convert_state_dict
    from open_clip.model import convert_to_custom_text_state_dict, resize_pos_embed, resize_text_pos_embed

    state = convert_state_dict(model, state)
    if "positional_embedding" in state and not hasattr(model, "positional_embedding"):
        state = convert_to_custom_text_state_dict(state)
    for name in ("logit_scale", "logit_bias"):
        own = getattr(model, name, None)
        if name in state and own is not None and own.ndim != state[name].ndim:
            state[name] = state[name].reshape(own.shape)
    if "logit_bias" not in state and getattr(model, "logit_bias", None) is not None:
        state["logit_bias"] = torch.zeros_like(state["logit_scale"])
    state.pop("text.transformer.embeddings.position_ids", None)
    resize_pos_embed(state, model)
    resize_text_pos_embed(state, model)
    expected = model.state_dict()
    for key, value in state.items():  # e.g. a half-precision file: convert (a copy of those tensors only)
        if key in expected and value.dtype != expected[key].dtype:
            state[key] = value.to(expected[key].dtype)
    return state


def _rebuild_buffers(model: torch.nn.Module) -> bool:
    """Give the non-persistent buffers left on the meta device real values; False when one is not
    known (the caller then builds the model normally)."""
    for module in model.modules():
        for name, buf in list(module.named_buffers(recurse=False)):
            if not buf.is_meta:
                continue
            if name == "attn_mask" and buf.ndim == 2 and buf.shape[0] == buf.shape[1] and buf.is_floating_point():
                n = buf.shape[0]  # open_clip's causal text mask (build_causal_mask / build_attention_mask)
                module.register_buffer(name, torch.full((n, n), float("-inf"), dtype=buf.dtype).triu_(1), persistent=False)
            else:
                logger.info("cannot rebuild the buffer %s of %s on the meta device", name, type(module).__name__)
                return False
    return True


@contextmanager
def _quiet_random_init():
    """open_clip warns on the root logger that a model built without weights is random: these are
    loaded right after."""

    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return not str(record.msg).startswith(_RANDOM_INIT_MESSAGE)

    drop = _Drop()
    logging.getLogger().addFilter(drop)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(drop)


def create_from_checkpoint(model_name: str, path: Path, device: torch.device, **kwargs: Any):
    """(model, eval preprocess) of open_clip's ``model_name`` with the weights of the local file
    ``path``, holding one copy of them (see the module doc)."""
    import open_clip

    if path.suffix in (".npz", ".npy"):  # big_vision weights: open_clip's own loader
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=str(path), device=device, **kwargs)
        return model, preprocess
    state = read_state_dict(path)
    with _quiet_random_init(), torch.device("meta"):
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=None, device="meta", **kwargs)
    state = _massage(model, state)
    model.load_state_dict(state, strict=True, assign=True)
    del state
    if not _rebuild_buffers(model):
        with _quiet_random_init():
            model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=None, device="cpu", **kwargs)
        model.load_state_dict(_massage(model, read_state_dict(path)), strict=True, assign=True)
    if device.type != "cpu":
        model = model.to(device)
    return model, preprocess
