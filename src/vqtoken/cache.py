"""
Cached video tokens: encode a video once, ask it many questions.

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

Files are written atomically (a temporary file in the same folder, then `os.replace`): an interrupted write leaves
no partial `.vqt`, which is what lets [`encode_folder`] resume where it stopped.
"""

import datetime
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

from .modeling.vqtoken_inference import VideoAnswer, answer_prompts_from_codebooks, video_prompt
from .modeling.modeling_vqtoken_llava_onevision import VQTokenVideoOutput
from .files import hash_stream, write_atomically
from .modeling.video_io import FRAME_LAYOUT, DecodedVideo, VideoDecodeError, load_video


logger = logging.getLogger(__name__)

FORMAT_NAME = "vqtoken-video"
# version 2: clusters are numbered by first appearance in the index map (version 1 kept the k-means seeding order)
FORMAT_VERSION = 2
CACHE_SUFFIX = ".vqt"
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".mpg", ".mpeg", ".gif", ".ts", ".flv", ".wmv")
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


@dataclass
class EncodeReport:
    """What [`encode_folder`] did: files written, outputs already valid and skipped, and failures `(source, error)`."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def counts(self) -> str:
        return f"{len(self.written)} encoded, {len(self.skipped)} already done, {len(self.failed)} failed"

    def summary(self) -> str:
        return "\n".join([self.counts(), *(f"  failed: {source}: {error}" for source, error in self.failed)])


# ---------------------------------------------------------------------------------------------------------------------
# Fingerprints and settings
# ---------------------------------------------------------------------------------------------------------------------


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
    for prefix, module in (("vision_tower", inner.vision_tower), ("multi_modal_projector", inner.multi_modal_projector)):
        tensors += [(f"{prefix}.{name}", tensor) for name, tensor in module.state_dict(keep_vars=True).items()]
    key = tuple((name, tensor.data_ptr(), tensor._version, tensor.dtype, tuple(tensor.shape)) for name, tensor in tensors)
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


def source_fingerprint(source) -> str:
    """
    sha256 of a video source: the bytes of a file (streamed) or file object, or the shape, dtype and bytes of frames
    (an array, a list of frames, or the frames of a [`DecodedVideo`]).
    """
    digest = hashlib.sha256()
    if isinstance(source, DecodedVideo):
        source = source.frames
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as stream:
            hash_stream(digest, stream)
        return "file:" + digest.hexdigest()
    if hasattr(source, "read"):
        position = source.tell() if source.seekable() else None
        if position is None:
            raise ValueError("A non-seekable file object cannot be fingerprinted and read again: pass its bytes.")
        hash_stream(digest, source)
        source.seek(position)
        return "file:" + digest.hexdigest()
    frames = np.ascontiguousarray(np.asarray(source))
    digest.update(f"{frames.shape}:{frames.dtype}:".encode())
    digest.update(frames.tobytes())
    return "frames:" + digest.hexdigest()


def _preprocess_settings(processor) -> str | None:
    if processor is None:
        return None
    video_processor = getattr(processor, "video_processor", None)
    if video_processor is None:
        return None
    names = ("size", "crop_size", "do_resize", "do_center_crop", "do_rescale", "rescale_factor", "do_normalize",
             "image_mean", "image_std", "do_convert_rgb", "resample")
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


# ---------------------------------------------------------------------------------------------------------------------
# Writing and reading one file
# ---------------------------------------------------------------------------------------------------------------------


def tensor_checksum(*tensors: torch.Tensor) -> str:
    """sha256 of the dtypes, shapes and bytes of CPU tensors, in order."""
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(f"{tensor.dtype}:{tuple(tensor.shape)}:".encode())
        digest.update(tensor.contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_cached_video(
    path,
    model,
    codebook: torch.Tensor,
    index_map: torch.Tensor,
    source: str,
    processor=None,
    video: DecodedVideo | None = None,
    extra_tensors: dict[str, torch.Tensor] | None = None,
    extra_metadata: dict[str, str] | None = None,
) -> Path:
    """
    Writes one encoded video to `path` (atomically).

    Args:
        path: the `.vqt` file to write.
        model: the model that encoded the video (for its settings and fingerprint).
        codebook (`torch.Tensor` of shape `(K, hidden_size)`), index_map (`torch.LongTensor` of shape `(T, P)`): one
            entry of `VQTokenVideoOutput.codebooks` / `.index_maps`.
        source: the source fingerprint ([`source_fingerprint`]).
        processor: the processor that prepared the frames (its resize and normalisation are recorded).
        video: the decoded video (its name, frame indices and times are recorded).
        extra_tensors, extra_metadata: more tensors and string metadata to store (a stream's state, see
            `vqtoken.streaming`); metadata given here replaces the fields written by default.
    """
    path = Path(path)
    settings = cache_settings(model)
    num_frames, tokens_per_frame = index_map.shape
    if codebook.ndim != 2 or codebook.shape[1] != model.config.text_config.hidden_size:
        raise ValueError(f"`codebook` must be (K, {model.config.text_config.hidden_size}), got {tuple(codebook.shape)}.")
    if tokens_per_frame != model.config.vqtoken_tokens_per_frame:
        raise ValueError(f"`index_map` must have {model.config.vqtoken_tokens_per_frame} columns, got {tokens_per_frame}.")
    num_clusters = codebook.shape[0]
    codebook = codebook.detach().cpu().contiguous()
    index_dtype = torch.int16 if num_clusters <= torch.iinfo(torch.int16).max else torch.int32
    index_map = index_map.detach().cpu().to(index_dtype).contiguous()
    metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "num_clusters": str(num_clusters),
        "num_frames": str(num_frames),
        "sampling": "uniform",
        **settings,
        "model_fingerprint": model_fingerprint(model),
        "source_fingerprint": source,
        "tensors_sha256": tensor_checksum(codebook, index_map),
        "kmeans_backend": str(model.config.vqtoken_kmeans_backend),
        "model_dtype": str(model.dtype).removeprefix("torch."),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    preprocess = _preprocess_settings(processor)
    if preprocess is not None:
        metadata["preprocess"] = preprocess
    if video is not None:
        metadata["source"] = video.source
        metadata["frame_indices"] = json.dumps(list(video.indices))
        metadata["frame_times"] = json.dumps([round(float(time), 6) for time in video.timestamps])
    try:
        from . import __version__

        metadata["vqtoken_version"] = __version__
    except ImportError:  # pragma: no cover
        pass
    metadata.update(extra_metadata or {})
    data = safetensors_save({"codebook": codebook, "index_map": index_map, **(extra_tensors or {})}, metadata=metadata)
    write_atomically(path, lambda stream: stream.write(data))
    return path


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
    preprocess = _preprocess_settings(processor)
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


def load_cached_videos(paths, model, processor=None, num_frames: int | None = None) -> VQTokenVideoOutput:
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


# ---------------------------------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------------------------------


def _encode_one(model, processor, video: DecodedVideo) -> tuple[torch.Tensor, torch.Tensor]:
    inputs = processor.video_processor(videos=[video.frames], return_tensors="pt", input_data_format=FRAME_LAYOUT)
    pixel_values_videos = inputs["pixel_values_videos"].to(model.device, model.dtype)
    outputs = model.encode_videos(pixel_values_videos)
    return outputs.codebooks[0], outputs.index_maps[0]


def _encode_to_file(model, processor, video, output, num_frames: int, overwrite: bool = True) -> Path | None:
    """
    Encodes one video into `output` (written atomically). With `overwrite=False` an `output` already valid for this
    model, these settings and this source is kept, and `None` returned.
    """
    fingerprint = source_fingerprint(video)
    output = Path(output)
    if not overwrite and output.exists() and output_is_current(output, model, fingerprint, processor, num_frames):
        return None
    decoded = video if isinstance(video, DecodedVideo) else load_video(video, num_frames=num_frames)
    codebook, index_map = _encode_one(model, processor, decoded)
    save_cached_video(output, model, codebook, index_map, fingerprint, processor, decoded)
    logger.info("encoded %s -> %s (K=%d)", decoded.source, output, codebook.shape[0])
    return output


def encode_videos(model, processor, videos: list, outputs: list, num_frames: int | None = None) -> list[Path]:
    """
    Encodes each video and writes its `.vqt` file: `videos[i]` -> `outputs[i]`.

    Args:
        model: a [`VQTokenLlavaOnevisionForConditionalGeneration`] in mode `"centroids"` or `"attention"`.
        processor: its processor (the video processor prepares the frames).
        videos: paths, file objects, frame arrays `(T, H, W, 3)` or [`DecodedVideo`]s (for a `DecodedVideo` the
            source fingerprint covers its frames).
        outputs: one output path per video.
        num_frames: frames sampled uniformly over each whole clip (default: `processor.default_num_frames`).

    Returns:
        the written paths.
    """
    if len(videos) != len(outputs):
        raise ValueError(f"Got {len(videos)} videos but {len(outputs)} output paths.")
    num_frames = num_frames or processor.default_num_frames
    return [_encode_to_file(model, processor, video, output, num_frames) for video, output in zip(videos, outputs)]


def collect_videos(inputs: list, output, recursive: bool = True) -> list[tuple[Path, Path]]:
    """
    `(video, .vqt path)` pairs for the files and folders of `inputs`: `output` is a `.vqt` path for one video file, or
    a folder that receives one `.vqt` per video (a folder's layout is kept). Raises `ValueError` when two inputs would
    write the same file or a `.vqt` output is given several videos.
    """
    output = Path(output)
    if output.suffix.lower() == CACHE_SUFFIX:
        if len(inputs) != 1 or Path(inputs[0]).is_dir():
            raise ValueError(f"A .vqt output path ({output}) takes exactly one video file; give a folder for several.")
        return [(Path(inputs[0]), output)]
    pairs = []
    for item in map(Path, inputs):
        if item.is_dir():
            pattern = "**/*" if recursive else "*"
            for path in sorted(item.glob(pattern)):
                if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
                    pairs.append((path, output / path.relative_to(item).with_suffix(CACHE_SUFFIX)))
        else:
            pairs.append((item, output / Path(item.name).with_suffix(CACHE_SUFFIX)))
    outputs = [target for _, target in pairs]
    duplicates = sorted({str(target) for target in outputs if outputs.count(target) > 1})
    if duplicates:
        raise ValueError(f"Several inputs would write the same output file(s) {duplicates}: encode them separately.")
    return pairs


def output_is_current(output: Path, model, source: str, processor=None, num_frames: int | None = None) -> bool:
    """Whether `output` is a valid `.vqt` of the video with fingerprint `source` for `model` (resume check)."""
    try:
        cached = load_cached_video(output, model, processor, num_frames)
    except (CacheError, OSError) as error:
        logger.info("re-encoding %s: %s", output, error)
        return False
    return cached.metadata.get("source_fingerprint") == source


def encode_folder(
    model,
    processor,
    inputs: list,
    output,
    num_frames: int | None = None,
    overwrite: bool = False,
    recursive: bool = True,
    progress: bool = True,
) -> EncodeReport:
    """
    Encodes every video of `inputs` (files, and video files found in folders) to `output` (see [`collect_videos`]).
    A video whose output exists and is valid for this model, these settings and this source is skipped, so an
    interrupted run resumes where it stopped; a video that cannot be read or written is reported and the others go
    on (any other error stops the run: it is a bug, not a bad file).

    Returns:
        [`EncodeReport`].
    """
    from tqdm.auto import tqdm

    num_frames = num_frames or processor.default_num_frames
    report = EncodeReport()
    bar = tqdm(collect_videos(inputs, output, recursive), desc="encoding videos", unit="video", disable=not progress)
    for source, target in bar:
        bar.set_postfix_str(source.name, refresh=False)
        try:
            written = _encode_to_file(model, processor, source, target, num_frames, overwrite=overwrite)
        except (VideoDecodeError, CacheError, OSError) as error:  # one bad file must not stop a folder
            logger.info("could not encode %s: %s", source, error)
            problem = f"{error.filename}: {error.strerror}" if isinstance(error, OSError) and error.strerror else error
            report.failed.append((str(source), str(problem)))
            continue
        (report.written if written is not None else report.skipped).append(target)
    bar.close()
    return report


# ---------------------------------------------------------------------------------------------------------------------
# Asking
# ---------------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def ask_cached(
    model, processor, paths: list, questions: list[str], max_new_tokens: int = 64, **generate_kwargs
) -> list[VideoAnswer]:
    """
    Answers `questions[i]` about the cached video `paths[i]`, in one batch, without decoding, vision tower or
    clustering. Timings: `load` (read and validate the files), `tokens` (rebuild the video tokens: VQ-Attention or
    codebook), `preprocess` (tokenise the prompts), `prefill`, `generation`.
    """
    if len(paths) != len(questions):
        raise ValueError(f"Got {len(paths)} cached videos but {len(questions)} questions: give one question per video.")
    if not paths:
        raise ValueError("No cached video given.")
    start = time.perf_counter()
    cached = [load_cached_video(path, model, processor) for path in paths]
    timings = {"load": time.perf_counter() - start}
    return answer_prompts_from_codebooks(
        model,
        processor,
        [video_prompt(processor, question) for question in questions],
        [video.codebook for video in cached],
        [video.index_map for video in cached],
        max_new_tokens,
        timings=timings,
        **generate_kwargs,
    )
