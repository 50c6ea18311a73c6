# Copyright 2026 The VQToken for Transformers authors. Licensed under the Apache License, Version 2.0.
"""
The `.vqt` format: a video encoded once (codebook and index map), read back and checked against the model that asks.

A VQToken video is a codebook of K vectors and an index map (the cluster of every token of every frame): tens of
kilobytes, where stock LLaVA-OneVision feeds thousands of visual tokens. A `.vqt` file stores exactly that, as
safetensors, so that asking a question later skips decoding, the vision tower and the clustering:

- tensor `codebook` `[K, D]`, in the dtype the model produced it in (the model's dtype: fp32 on the CPU, bf16/fp16 on
  a GPU), so that tokens rebuilt from the file are the very tokens `generate` would have used;
- tensor `index_map` `[T, P]`, int16 (int32 when K > 32767), `T` frames of `P` tokens;
- string metadata: the format and its version, K, T, P, the hidden size, every setting that determines the codebook,
  a fingerprint of the model weights that determine it, a fingerprint of the source video, and informational fields
  (frame indices and times, dtype, package version, date).

The mode (`"attention"` or `"centroids"`) is not baked in: both are rebuilt from the codebook and the index map with
the current model's VQ-Attention weights and `image_newline`. What must match between the file and the model it is
read with (else [`CacheMismatchError`] names the field):

- `model_fingerprint`: the weights of the vision tower and of the projector (see [`model_fingerprint`]);
- `hidden_size`, `tokens_per_frame`, `image_size`, `patch_size`, `vision_feature_layer`,
  `vision_feature_select_strategy`, `spatial_pool`, `selection_method`, `max_clusters`, `max_iterations`,
  `tolerance`, `seed`, and `min_clusters` when the selection method is adaptive;
- `preprocess` (the video processor's resize and normalisation) when a processor is given to the loader;
- `num_frames` (and the uniform sampling it implies) when the caller asks for a frame count.

The K-means backend (torch or Triton) is recorded but not checked: both run the same algorithm.

This file ships with the model code (`trust_remote_code`), so that the `video-text-to-text` pipeline answers `.vqt`
files without the `vqtoken` package; writing files, encoding folders and asking from files stay in the package
(`vqtoken.cache`). Relative imports only.
"""

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load as safetensors_load


if TYPE_CHECKING:  # the model module is not imported at run time: it would close a loop model -> pipeline -> here
    from .modeling_vqtoken_llava_onevision import VQTokenVideoOutput


FORMAT_NAME = "vqtoken-video"
# version 2: clusters are numbered by first appearance in the index map (version 1 kept the k-means seeding order)
FORMAT_VERSION = 2
CACHE_SUFFIX = ".vqt"
FINGERPRINT_SAMPLES = 1024
"""Elements read from each weight tensor by [`fingerprint_tensors`] (evenly spaced, first and last included)."""

_REQUIRED_TENSORS = ("codebook", "index_map")


class CacheError(ValueError):
    """A `.vqt` file cannot be used."""


class CacheFormatError(CacheError):
    """A file is not a readable `.vqt` file of a supported version (corrupted, truncated, or something else)."""


class CacheMismatchError(CacheError):
    """A `.vqt` file was made by another model or with other settings; `field` names what differs."""

    def __init__(self, field: str, cached, current, path=None):
        self.field, self.cached, self.current, self.path = field, cached, current, path
        where = f"{path}: " if path is not None else ""
        super().__init__(
            f"{where}the cached video was made with {field}={cached!r} but the current model has {field}={current!r}. "
            "A cache is only valid for the model weights and VQ settings that made it: re-encode the video "
            "(`vqtoken encode`)."
        )


@dataclass
class CachedVideo:
    """
    One video read from a `.vqt` file.

    Attributes:
        codebook (`torch.Tensor` of shape `(num_clusters, hidden_size)`)
        index_map (`torch.LongTensor` of shape `(num_frames, tokens_per_frame)`)
        metadata: the file's string metadata.
        path: where it was read from.
    """

    codebook: torch.Tensor
    index_map: torch.Tensor
    metadata: dict[str, str]
    path: Path | None = None

    @property
    def num_clusters(self) -> int:
        return self.codebook.shape[0]

    @property
    def num_frames(self) -> int:
        return self.index_map.shape[0]


def _inner_model(model):
    inner = getattr(model, "model", model)
    if not hasattr(inner, "vision_tower") or not hasattr(inner, "video_outputs_from_codebooks"):
        raise TypeError(f"Expected a VQToken LLaVA-OneVision model, got {type(model).__name__}.")
    return inner


def model_fingerprint(model) -> str:
    """
    sha256 over what determines a video's codebook: the weights of the vision tower and the projector, that is the
    tensors of their `state_dict` (parameters and persistent buffers: what the weights file stores, so that a server
    holding only the file, such as the vLLM plugin, computes the same value), hashed by [`fingerprint_tensors`].

    It costs milliseconds for LLaVA-OneVision-0.5B (hashing all ~400 M tower parameters would take seconds). Other
    weights or a fine-tuned tower change essentially every element, so they change the fingerprint; an edit confined
    to unsampled elements would not. The result is kept on the model and recomputed when a tensor is replaced or
    modified in place (load_state_dict, an optimiser step).
    """
    inner = _inner_model(model)
    tensors = []
    for prefix, module in (
        ("vision_tower", inner.vision_tower),
        ("multi_modal_projector", inner.multi_modal_projector),
    ):
        tensors += [(f"{prefix}.{name}", tensor) for name, tensor in module.state_dict(keep_vars=True).items()]
    key = tuple(
        (name, tensor.data_ptr(), tensor._version, tensor.dtype, tuple(tensor.shape)) for name, tensor in tensors
    )
    memo = inner.__dict__.get("_vqtoken_fingerprint")
    if memo is not None and memo[0] == key:
        return memo[1]
    fingerprint = fingerprint_tensors(tensors)
    inner.__dict__["_vqtoken_fingerprint"] = (key, fingerprint)
    return fingerprint


def fingerprint_tensors(named_tensors: list[tuple[str, torch.Tensor]]) -> str:
    """
    sha256 over `(name, tensor)` pairs, in name order: each name and shape, and a sample of [`FINGERPRINT_SAMPLES`]
    evenly spaced elements of the tensor (first and last included; all of a smaller one) as fp32, so that the value
    does not depend on the device, and on the dtype only through the values themselves.
    """
    digest = hashlib.sha256(b"vqtoken-model-fingerprint-v2")
    with torch.no_grad():
        for name, tensor in sorted(named_tensors, key=lambda item: item[0]):
            flat = tensor.detach().reshape(-1)
            digest.update(f"{name}:{tuple(tensor.shape)}:".encode())
            if flat.numel() > FINGERPRINT_SAMPLES:
                positions = torch.linspace(0, flat.numel() - 1, FINGERPRINT_SAMPLES, dtype=torch.float64)
                flat = flat[positions.round().long().to(flat.device)]
            digest.update(flat.to(torch.float32).cpu().numpy().tobytes())
    return digest.hexdigest()


def preprocess_settings(processor) -> str | None:
    """The video processor's resize and normalisation settings a cached video must have been made with, as JSON."""
    if processor is None:
        return None
    video_processor = getattr(processor, "video_processor", None)
    if video_processor is None:
        return None
    names = (
        "size",
        "crop_size",
        "do_resize",
        "do_center_crop",
        "do_rescale",
        "rescale_factor",
        "do_normalize",
        "image_mean",
        "image_std",
        "do_convert_rgb",
        "resample",
    )
    values = {}
    for name in names:
        value = getattr(video_processor, name, None)
        if hasattr(value, "__dict__") and not isinstance(value, (int, float, str)):
            value = {key: val for key, val in vars(value).items() if val is not None}
        values[name] = value.value if hasattr(value, "value") else value
    return json.dumps(values, sort_keys=True, default=str)


def cache_settings(model) -> dict[str, str]:
    """The settings of `model` a cached video must have been made with (see the module docstring), as strings."""
    return config_cache_settings(model.config)


def config_cache_settings(config) -> dict[str, str]:
    """[`cache_settings`] of a model with configuration `config` (a [`VQTokenLlavaOnevisionConfig`])."""
    settings = {
        "hidden_size": config.text_config.hidden_size,
        "tokens_per_frame": config.vqtoken_tokens_per_frame,
        "image_size": config.vision_config.image_size,
        "patch_size": config.vision_config.patch_size,
        "vision_feature_layer": config.vision_feature_layer,
        "vision_feature_select_strategy": config.vision_feature_select_strategy,
        "spatial_pool": config.vqtoken_spatial_pool,
        "selection_method": config.vqtoken_selection_method,
        "max_clusters": config.vqtoken_max_clusters,
        "max_iterations": config.vqtoken_max_iterations,
        "tolerance": config.vqtoken_tolerance,
        "seed": config.vqtoken_seed,
    }
    if config.vqtoken_selection_method != "fixed":
        settings["min_clusters"] = config.vqtoken_min_clusters
    return {name: json.dumps(value) for name, value in settings.items()}


def tensor_checksum(*tensors: torch.Tensor) -> str:
    """sha256 of the dtypes, shapes and bytes of CPU tensors, in order."""
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(f"{tensor.dtype}:{tuple(tensor.shape)}:".encode())
        digest.update(tensor.contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def read_cached_video(path) -> CachedVideo:
    """
    Reads a `.vqt` file and checks that it is whole and self-consistent (not that it fits a model: see
    [`validate_cached_video`]).

    Raises:
        FileNotFoundError: no such file.
        CacheFormatError: not a `.vqt` file, truncated or corrupted, or of an unsupported format version.
    """
    path = Path(path)
    return parse_cached_video(path.read_bytes(), path)


def parse_cached_video(data: bytes, path=None) -> CachedVideo:
    """
    [`read_cached_video`] of the bytes of a `.vqt` file (e.g. received in a request); `path`, if given, names it in
    errors.

    Raises:
        CacheFormatError: not a `.vqt` file, truncated or corrupted, or of an unsupported format version.
    """
    path = Path(path) if path is not None else None
    where = path if path is not None else "<.vqt bytes>"
    try:
        tensors = safetensors_load(data)
        header_length = int.from_bytes(data[:8], "little")  # safetensors: u64 length, then the JSON header
        metadata = dict(json.loads(data[8 : 8 + header_length]).get("__metadata__") or {})
    except Exception as error:  # safetensors raises its own error types for bad headers and short files
        raise CacheFormatError(f"{where}: not a readable .vqt file (truncated or corrupted?): {error}") from error
    if metadata.get("format") != FORMAT_NAME:
        raise CacheFormatError(f"{where}: not a VQToken video cache (format {metadata.get('format')!r}).")
    if metadata.get("format_version") != str(FORMAT_VERSION):
        raise CacheFormatError(
            f"{where}: .vqt format version {metadata.get('format_version')!r} is not supported by this version of "
            f"vqtoken (it reads version {FORMAT_VERSION}); re-encode the video."
        )
    missing = [name for name in _REQUIRED_TENSORS if name not in tensors]
    if missing:
        raise CacheFormatError(f"{where}: missing tensors {missing}.")
    codebook, index_map = tensors["codebook"], tensors["index_map"]
    if metadata.get("tensors_sha256") != tensor_checksum(codebook, index_map):
        raise CacheFormatError(f"{where}: the tensors do not match their checksum: the file is corrupted.")
    try:
        num_clusters, num_frames = int(metadata["num_clusters"]), int(metadata["num_frames"])
        tokens_per_frame = int(metadata["tokens_per_frame"])
    except (KeyError, ValueError) as error:
        raise CacheFormatError(f"{where}: incomplete metadata ({error}).") from error
    if codebook.ndim != 2 or codebook.shape[0] != num_clusters:
        raise CacheFormatError(f"{where}: codebook of shape {tuple(codebook.shape)} for K={num_clusters}.")
    if tuple(index_map.shape) != (num_frames, tokens_per_frame) or index_map.is_floating_point():
        raise CacheFormatError(f"{where}: index map of shape {tuple(index_map.shape)} / {index_map.dtype}.")
    index_map = index_map.long()
    if index_map.numel() and (int(index_map.min()) < 0 or int(index_map.max()) >= num_clusters):
        raise CacheFormatError(f"{where}: index map refers to clusters outside 0..{num_clusters - 1}.")
    return CachedVideo(codebook=codebook, index_map=index_map, metadata=metadata, path=path)


def validate_cached_video(cached: CachedVideo, model, processor=None, num_frames: int | None = None):
    """
    Raises [`CacheMismatchError`] naming the first field where `cached` does not fit `model` (and `processor` /
    `num_frames` when given); see the module docstring for the fields.
    """
    check_cached_video(cached, model.config, model_fingerprint(model), processor, num_frames)


def check_cached_video(cached: CachedVideo, config, current_fingerprint: str, processor=None, num_frames=None):
    """
    [`validate_cached_video`] against a model known by its configuration and [`model_fingerprint`] (e.g. one served by
    another engine, whose weights are read from its folder: see `vqtoken.vllm_plugin`).
    """
    metadata = cached.metadata
    for name, current in config_cache_settings(config).items():
        if metadata.get(name) != current:
            raise CacheMismatchError(name, _loads(metadata.get(name)), json.loads(current), cached.path)
    if cached.codebook.shape[1] != config.text_config.hidden_size:
        raise CacheMismatchError("hidden_size", cached.codebook.shape[1], config.text_config.hidden_size, cached.path)
    if metadata.get("model_fingerprint") != current_fingerprint:
        raise CacheMismatchError(
            "model_fingerprint", metadata.get("model_fingerprint"), current_fingerprint, cached.path
        )
    preprocess = preprocess_settings(processor)
    if preprocess is not None and "preprocess" in metadata and metadata["preprocess"] != preprocess:
        raise CacheMismatchError("preprocess", json.loads(metadata["preprocess"]), json.loads(preprocess), cached.path)
    if num_frames is not None and cached.num_frames != num_frames:
        raise CacheMismatchError("num_frames", cached.num_frames, num_frames, cached.path)


def _loads(value):
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


def load_cached_video(path, model, processor=None, num_frames: int | None = None) -> CachedVideo:
    """[`read_cached_video`] then [`validate_cached_video`]."""
    cached = read_cached_video(path)
    validate_cached_video(cached, model, processor, num_frames)
    return cached


def load_cached_videos(paths, model, processor=None, num_frames: int | None = None) -> "VQTokenVideoOutput":
    """
    Reads and validates `.vqt` files and rebuilds the tokens the language model reads for them, in the model's current
    mode: pass the result to `model.generate(input_ids=..., video_outputs=...)` with one video placeholder run per
    file (a single `<video>` token per video is enough: `generate` rewrites each run to its video's length).

    Args:
        paths: one path or a list of paths.
        model: a [`VQTokenLlavaOnevisionForConditionalGeneration`] (or its inner model).
        processor: if given, its video preprocessing must match the one the files were made with.
        num_frames: if given, every file must hold this many frames.

    Raises:
        CacheFormatError, CacheMismatchError (both `ValueError`), FileNotFoundError.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    cached = [load_cached_video(path, model, processor, num_frames) for path in paths]
    if not cached:
        raise ValueError("No cached video given.")
    with torch.no_grad():
        return _inner_model(model).video_outputs_from_codebooks(
            [video.codebook for video in cached], [video.index_map for video in cached]
        )


def is_cached_video(path) -> bool:
    """Whether `path` names a `.vqt` file (by its suffix)."""
    return isinstance(path, (str, os.PathLike)) and str(path).lower().endswith(CACHE_SUFFIX)


__all__ = [
    "CACHE_SUFFIX",
    "CacheError",
    "CacheFormatError",
    "CacheMismatchError",
    "CachedVideo",
    "FINGERPRINT_SAMPLES",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "cache_settings",
    "check_cached_video",
    "config_cache_settings",
    "fingerprint_tensors",
    "is_cached_video",
    "load_cached_video",
    "load_cached_videos",
    "model_fingerprint",
    "parse_cached_video",
    "preprocess_settings",
    "read_cached_video",
    "tensor_checksum",
    "validate_cached_video",
]
