"""
Cached video tokens: encode a video once, ask it many questions.

A `.vqt` file holds what a VQToken video is, a codebook of K vectors and an index map: tens of kilobytes, where stock
LLaVA-OneVision feeds thousands of visual tokens, so that asking a question later skips decoding, the vision tower and
the clustering. The format itself (what a file holds, reading it back, checking it against the model that asks) lives
with the model code in `modeling/vqtoken_video_cache.py` (`vqtoken.modeling.vqtoken_video_cache`), so that remote
code reads it too; this module writes files, encodes videos and folders, and asks from files, and re-exports the
format's API.

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
from safetensors.torch import save as safetensors_save

from .files import hash_stream, write_atomically
from .modeling.video_io import DecodedVideo, VideoDecodeError, load_video
from .modeling.vqtoken_inference import VideoAnswer, answer_prompts_from_codebooks, video_pixels, video_prompt
from .modeling.vqtoken_video_cache import (
    CACHE_SUFFIX,
    FORMAT_NAME,
    FORMAT_VERSION,
    CachedVideo,
    CacheError,
    CacheFormatError,
    CacheMismatchError,
    cache_settings,
    check_cached_video,
    config_cache_settings,
    fingerprint_tensors,
    is_cached_video,
    load_cached_video,
    load_cached_videos,
    model_fingerprint,
    parse_cached_video,
    preprocess_settings,
    read_cached_video,
    tensor_checksum,
    validate_cached_video,
)


logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".mpg", ".mpeg", ".gif", ".ts", ".flv", ".wmv")


@dataclass
class EncodeReport:
    """
    What [`encode_folder`] (or [`encode_pairs`]) did: files written, outputs already valid and skipped, and failures
    `(source, error)`.
    """

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


# ---------------------------------------------------------------------------------------------------------------------
# Writing and reading one file
# ---------------------------------------------------------------------------------------------------------------------


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
        raise ValueError(
            f"`codebook` must be (K, {model.config.text_config.hidden_size}), got {tuple(codebook.shape)}."
        )
    if tokens_per_frame != model.config.vqtoken_tokens_per_frame:
        raise ValueError(
            f"`index_map` must have {model.config.vqtoken_tokens_per_frame} columns, got {tokens_per_frame}."
        )
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
    preprocess = preprocess_settings(processor)
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


# ---------------------------------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------------------------------


def _encode_one(model, processor, video: DecodedVideo) -> tuple[torch.Tensor, torch.Tensor]:
    outputs = model.encode_videos(video_pixels(model, processor, video.frames))
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


def encode_to_vqt(model, processor, videos: list, outputs: list, num_frames: int | None = None) -> list[Path]:
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
    bar = tqdm(collect_videos(inputs, output, recursive), desc="encoding videos", unit="video", disable=not progress)

    def encode_one(source: Path, target: Path) -> bool:
        bar.set_postfix_str(source.name, refresh=False)
        return _encode_to_file(model, processor, source, target, num_frames, overwrite=overwrite) is not None

    with bar:
        return encode_pairs(bar, encode_one)


def encode_pairs(pairs, encode_one) -> EncodeReport:
    """
    Calls `encode_one(source, target)` for every `(source, target)` of `pairs`; it returns whether it wrote `target`
    (`False`: `target` was already up to date). A video that cannot be read or written is reported and the others go
    on; any other error stops the run (it is a bug, not a bad file).
    """
    report = EncodeReport()
    for source, target in pairs:
        try:
            written = encode_one(source, target)
        except (VideoDecodeError, CacheError, OSError) as error:
            logger.info("could not encode %s: %s", source, error)
            problem = f"{error.filename}: {error.strerror}" if isinstance(error, OSError) and error.strerror else error
            report.failed.append((str(source), str(problem)))
            continue
        (report.written if written else report.skipped).append(target)
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
        raise ValueError(
            f"Got {len(paths)} cached videos but {len(questions)} questions: give one question per video."
        )
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


__all__ = [
    "CACHE_SUFFIX",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "VIDEO_SUFFIXES",
    "CacheError",
    "CacheFormatError",
    "CacheMismatchError",
    "CachedVideo",
    "EncodeReport",
    "ask_cached",
    "cache_settings",
    "check_cached_video",
    "collect_videos",
    "config_cache_settings",
    "encode_folder",
    "encode_pairs",
    "encode_to_vqt",
    "fingerprint_tensors",
    "is_cached_video",
    "load_cached_video",
    "load_cached_videos",
    "model_fingerprint",
    "output_is_current",
    "parse_cached_video",
    "preprocess_settings",
    "read_cached_video",
    "save_cached_video",
    "source_fingerprint",
    "tensor_checksum",
    "validate_cached_video",
]
