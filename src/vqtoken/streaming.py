"""
Streaming and long videos: ask a VQToken model about a video while it arrives, or about one too long to hold.

Offline, a video is decoded, encoded and clustered whole: an hour at 1 frame/s is 3,600 frames, 2.6 M tokens and
9.4 GB of features at release size before clustering starts, and a live source cannot be asked anything until it
ends. A [`VideoStream`] takes the frames in chunks as they arrive (`uint8` arrays, e.g. from a camera, or windows
decoded from a long or growing file or from an open PyAV container, [`VideoStream.add_video`]), runs the vision tower
and the projector on each chunk and folds its tokens into an incremental codebook (`vqtoken.incremental_codebook`):
only one chunk of frames and features is held at a time.

The stream can be asked at any time ([`VideoStream.ask`]). The language model reads the codebook so far (mode
`"centroids"`: K + 1 tokens) or the VQ-Attention over it and `attention_frames` (T) rows of the index map spread
uniformly over the frames seen (mode `"attention"`: max(T, K) + 1 tokens), as the offline path reads T frames sampled
over the whole video. An answer costs the language model's prefill and generation only; asking changes nothing.

All frames in one chunk give exactly the offline codebook and index map. A stream can be written to a `.vqt` file
([`VideoStream.save`]: the codebook and the T rows the model reads, so every `.vqt` reader answers from it as the
stream does, and the stream's whole state) and resumed from it ([`VideoStream.resume`]) to go on with the same video.
"""

import dataclasses
import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .cache import (
    CacheFormatError,
    read_cached_video,
    save_cached_video,
    tensor_checksum,
    validate_cached_video,
)
from .files import hash_stream
from .incremental_codebook import CodebookSettings, IncrementalCodebook
from .modeling.video_io import (
    DEFAULT_NUM_FRAMES,
    DecodedVideo,
    FrameWindows,
    read_windows,
    source_name,
    uniform_indices,
)
from .modeling.vqtoken_inference import (
    VideoAnswer,
    answer_prompts_from_codebooks,
    stock_video_tokens,
    video_pixels,
    video_prompt,
)


logger = logging.getLogger(__name__)

STREAM_SAMPLING = "stream"
"""The `sampling` metadata of a `.vqt` file written by a stream."""
CHECKPOINT_CHUNKS = 16
"""[`encode_stream`] saves its `.vqt` file every this many chunks, so that an interrupted run resumes from there."""


class StreamError(ValueError):
    """A stream cannot take this input (closed, another frame size, another video...); the stream is unchanged."""


@dataclass
class StreamSnapshot:
    """
    What the language model reads for a stream at one moment; ask it with `ask_videos` or the pipeline as a video.

    Attributes:
        codebook (`torch.Tensor` of shape `(K, hidden_size)`): in the model's dtype.
        index_map (`torch.LongTensor` of shape `(attention_frames, tokens_per_frame)`): the index-map rows of
            `attention_frames` frames spread uniformly over the frames seen.
        num_frames: frames seen.
    """

    codebook: torch.Tensor
    index_map: torch.Tensor
    num_frames: int


@dataclass
class _VideoSource:
    """The video an `add_video` stream reads: its name, sampling rate and the last source frame taken."""

    name: str
    fps: float
    last_index: int
    num_bytes: int | None = None
    sha256: str | None = None


class VideoStream:
    """
    A video fed to a VQToken model chunk by chunk and asked about at any time (see the module docstring).

    Args:
        model: a [`VQTokenLlavaOnevisionForConditionalGeneration`] in mode `"centroids"` or `"attention"`, eval mode.
        processor: its processor (the video processor prepares the frames).
        attention_frames (`int`): T, the index-map rows the VQ-Attention reads (default: the number of frames the
            model expects, `processor.default_num_frames`, as the offline path samples).
        micro_clusters, chunk_clusters (`int`, *optional*): the incremental codebook's budget (default `8 * K`
            micro-clusters, and `4 * K` clusters per chunk, `2 * K` for a chunk of more than 4 M token values, for
            `K = vqtoken_max_clusters`; see [`CodebookSettings`]).

    Raises:
        `ValueError` for mode `"off"` or the silhouette selection (it needs every token at once).
    """

    def __init__(
        self,
        model,
        processor,
        attention_frames: int | None = None,
        micro_clusters: int | None = None,
        chunk_clusters: int | None = None,
    ):
        config = model.config
        if config.vqtoken_mode == "off":
            raise ValueError("A stream needs `vqtoken_mode` 'centroids' or 'attention', not 'off'.")
        config.validate_vqtoken_settings()
        attention_frames = attention_frames or processor.default_num_frames
        if isinstance(attention_frames, bool) or not isinstance(attention_frames, int) or attention_frames < 1:
            raise ValueError(f"`attention_frames` must be a positive integer, got {attention_frames!r}.")
        budget = {"micro_clusters": micro_clusters or 0, "chunk_clusters": chunk_clusters or 0}
        self.model = model
        self.processor = processor
        self.attention_frames = attention_frames
        self.codebook = IncrementalCodebook(
            CodebookSettings.from_config(config, **budget), backend=config.vqtoken_kmeans_backend
        )
        self.frame_size: tuple[int, int] | None = None
        self.frame_times: list[float] = []
        self.video: _VideoSource | None = None
        self.closed = False
        self._fingerprint = hashlib.sha256(b"vqtoken-stream-frames").hexdigest()

    # -----------------------------------------------------------------------------------------------------------------
    # State
    # -----------------------------------------------------------------------------------------------------------------

    @property
    def num_frames(self) -> int:
        """Frames seen so far."""
        return self.codebook.num_frames

    @property
    def num_clusters(self) -> int:
        """K of the codebook so far (0 before the first frame)."""
        return self.codebook.num_clusters

    @property
    def source_fingerprint(self) -> str:
        """A chained sha256 of every frame folded so far (shape, dtype and bytes of each chunk, in order)."""
        return "frames-chain:" + self._fingerprint

    def index_map(self) -> torch.LongTensor:
        """The cluster of every token of every frame seen: `(num_frames, tokens_per_frame)`."""
        return self.codebook.index_map()

    def snapshot(self) -> StreamSnapshot:
        """The codebook (model dtype) and the `attention_frames` index-map rows the model reads now."""
        if self.num_frames == 0:
            raise StreamError("The stream has no frame yet: add frames before asking it.")
        rows = uniform_indices(self.num_frames, self.attention_frames)
        return StreamSnapshot(
            codebook=self.codebook.codebook.to(self.model.dtype),
            index_map=self.codebook.index_map(rows),
            num_frames=self.num_frames,
        )

    # -----------------------------------------------------------------------------------------------------------------
    # Adding frames
    # -----------------------------------------------------------------------------------------------------------------

    def _checked_frames(self, frames, timestamps) -> tuple[np.ndarray, list[float]]:
        if self.closed:
            raise StreamError("The stream is closed: it takes no more frames.")
        if isinstance(frames, (list, tuple)):
            if not frames:
                raise StreamError("The chunk holds no frame.")
            if len({(np.asarray(frame).shape, np.asarray(frame).dtype) for frame in frames}) != 1:
                raise StreamError("The frames of a chunk must all have the same shape and dtype.")
            frames = np.stack([np.asarray(frame) for frame in frames])
        if not isinstance(frames, np.ndarray):
            raise StreamError(f"A chunk is a uint8 array (frames, height, width, 3), got {type(frames).__name__}.")
        if frames.dtype != np.uint8:
            raise StreamError(f"A chunk's frames must be uint8 RGB, got dtype {frames.dtype}.")
        if frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape:
            raise StreamError(f"A chunk must have shape (frames, height, width, 3), got {frames.shape}.")
        size = (int(frames.shape[1]), int(frames.shape[2]))
        if self.frame_size is not None and size != self.frame_size:
            raise StreamError(
                f"A chunk of {size[0]}x{size[1]} frames, but the stream's frames are "
                f"{self.frame_size[0]}x{self.frame_size[1]}: every chunk of a stream has the same frame size."
            )
        if timestamps is None:
            return frames, [math.nan] * frames.shape[0]
        times = [float(time) for time in timestamps]
        if len(times) != frames.shape[0]:
            raise StreamError(f"Got {len(times)} timestamps for {frames.shape[0]} frames.")
        previous = max((time for time in self.frame_times if not math.isnan(time)), default=-math.inf)
        for time in times:
            if not math.isfinite(time) or time <= previous:
                raise StreamError(f"Timestamps must be finite and increase from frame to frame, got {times}.")
            previous = time
        return frames, times

    @torch.no_grad()
    def add_frames(self, frames, timestamps=None) -> int:
        """
        Folds a chunk of frames into the stream: vision tower, projector, incremental codebook. A bad chunk raises
        [`StreamError`] and leaves the stream as it was.

        Args:
            frames: `uint8` array `(num_frames, height, width, 3)` (RGB), or a list of `(height, width, 3)` frames.
                Every chunk of a stream has the same frame size.
            timestamps: optional presentation time of each frame in seconds, increasing across chunks.

        Returns:
            the number of frames seen.
        """
        frames, times = self._checked_frames(frames, timestamps)
        features = self.model.model.get_frame_features(video_pixels(self.model, self.processor, frames))
        self.codebook.fold(features[0])
        self.frame_size = (int(frames.shape[1]), int(frames.shape[2]))
        self.frame_times += times
        digest = hashlib.sha256(self._fingerprint.encode())
        digest.update(f"{frames.shape}:{frames.dtype}:".encode())
        digest.update(memoryview(np.ascontiguousarray(frames)))  # the pixels as they are, not a copy
        self._fingerprint = digest.hexdigest()
        logger.debug("stream: %d frames, K=%d", self.num_frames, self.num_clusters)
        return self.num_frames

    def add_video(self, source, fps: float, window: int = DEFAULT_NUM_FRAMES) -> int:
        """
        Reads a video at `fps` frames per second of video time and folds it `window` frames at a time (decoded window
        by window: memory does not grow with the video's length). Called again on the same source, it goes on after
        the last frame taken: a file that has grown since, or the same video after [`resume`].

        Args:
            source: a path, a binary file object, or an open PyAV input container (e.g. a live source).
            fps: frames sampled per second of video time; the same on every call.
            window: frames per chunk.

        Returns:
            the number of frames seen.
        """
        for decoded in self.windows(source, fps, window):
            self.add_window(decoded)
        return self.num_frames

    def windows(self, source, fps: float, window: int = DEFAULT_NUM_FRAMES) -> FrameWindows:
        """
        The windows of `source` still to fold ([`add_video`] one window at a time: fold each with [`add_window`],
        e.g. to report progress, save checkpoints or ask between chunks). Its `num_frames` is the frames to come.

        Raises:
            StreamError: the stream is closed, or reads another video or at another rate.
        """
        if self.closed:
            raise StreamError("The stream is closed: it takes no more frames.")
        # the bytes read now are a prefix of what the index pass reads next (a growing file only grows)
        read_before = self.video.num_bytes if self.video is not None else None
        num_bytes, start_sha256, sha256 = _file_digests(source, read_before) if _is_file(source) else (None,) * 3
        self._check_same_video(source, fps, start_sha256)
        windows = read_windows(
            source, fps=fps, window=window, after_index=self.video.last_index if self.video is not None else -1
        )
        if self.video is None:
            self.video = _VideoSource(source_name(source), float(fps), -1)
        self.video.num_bytes, self.video.sha256 = num_bytes, sha256
        return windows

    def add_window(self, window: DecodedVideo) -> int:
        """Folds one window from [`windows`] (see [`add_frames`]) and records how far the video has been read."""
        if self.video is None:
            raise StreamError("`add_window` folds windows from `stream.windows(...)`; use `add_frames` for arrays.")
        self.add_frames(window.frames, window.timestamps)
        self.video.last_index = window.indices[-1]
        return self.num_frames

    def _check_same_video(self, source, fps: float, start_sha256: str | None):
        """Raises [`StreamError`] unless `source` is the video this stream reads (or it reads none yet);
        `start_sha256`: the sha256 of as many of its bytes as the stream read before."""
        name = source_name(source)
        if self.video is not None:
            if self.video.fps != float(fps):
                raise StreamError(f"The stream samples {self.video.name} at {self.video.fps} frames/s, not {fps}.")
            if self.video.name != name:
                raise StreamError(f"The stream reads {self.video.name}: start a new stream for {name}.")
            if self.video.num_bytes is not None and start_sha256 != self.video.sha256:
                raise StreamError(
                    f"{name} no longer starts with the {self.video.num_bytes} bytes this stream read: it is another "
                    "video now."
                )

    def close(self):
        """No more frames: later chunks are refused. The stream can still be asked and saved."""
        self.closed = True

    # -----------------------------------------------------------------------------------------------------------------
    # Asking
    # -----------------------------------------------------------------------------------------------------------------

    def ask(self, question: str, max_new_tokens: int = 64, **generate_kwargs) -> VideoAnswer:
        """
        Answers a question from the codebook and index map so far, with the same generation path as every other
        answer ([`answer_prompts_from_codebooks`]); greedy unless told otherwise. The stream is not changed.

        Returns:
            [`VideoAnswer`]: `num_frames`, `visual_tokens_stock` and `visual_tokens_clustered` count the frames seen.
        """
        snapshot = self.snapshot()
        answer = answer_prompts_from_codebooks(
            self.model,
            self.processor,
            [video_prompt(self.processor, question)],
            [snapshot.codebook],
            [snapshot.index_map],
            max_new_tokens,
            **generate_kwargs,
        )[0]
        return dataclasses.replace(
            answer,
            num_frames=self.num_frames,
            visual_tokens_stock=stock_video_tokens(self.model.config, self.num_frames),
            visual_tokens_clustered=self.num_frames * self.codebook.settings.tokens_per_frame,
        )

    # -----------------------------------------------------------------------------------------------------------------
    # Saving and resuming
    # -----------------------------------------------------------------------------------------------------------------

    def save(self, path) -> Path:
        """
        Writes the stream to a `.vqt` file, atomically: the codebook and the index-map rows the model reads (every
        `.vqt` reader answers from them as [`ask`] does), and the whole state, to [`resume`] from.
        """
        snapshot = self.snapshot()
        state = self.codebook.state_tensors()
        video = dataclasses.asdict(self.video) if self.video is not None else None
        metadata = {
            "sampling": STREAM_SAMPLING,
            "stream_settings": json.dumps(self.codebook.settings.to_dict(), sort_keys=True),
            "stream_chunks": str(self.codebook.num_chunks),
            "stream_frames": str(self.num_frames),
            "stream_closed": json.dumps(self.closed),
            "stream_tensors_sha256": tensor_checksum(*(state[name] for name in sorted(state))),
            "attention_frames": str(self.attention_frames),
            "frame_size": json.dumps(list(self.frame_size)),
            "frame_times": json.dumps([None if math.isnan(time) else round(time, 6) for time in self.frame_times]),
            "video": json.dumps(video),
        }
        if self.video is not None:
            metadata["source"] = self.video.name
        return save_cached_video(
            path,
            self.model,
            snapshot.codebook,
            snapshot.index_map,
            self.source_fingerprint,
            self.processor,
            extra_tensors=state,
            extra_metadata=metadata,
        )

    @classmethod
    def resume(cls, path, model, processor, attention_frames: int | None = None) -> "VideoStream":
        """
        The stream saved in `path`, to go on with: add frames (or call [`add_video`] on the same video again) and
        [`save`] it back. `attention_frames`: as in the constructor; default: the one the stream was saved with.

        Raises:
            CacheMismatchError: the file was made by another model or with other settings (the field is named).
            CacheFormatError: not a stream file, damaged, or of another format version.
        """
        cached = read_cached_video(path)
        metadata = cached.metadata
        if metadata.get("sampling") != STREAM_SAMPLING:
            raise CacheFormatError(f"{path}: not written by a stream (sampling {metadata.get('sampling')!r}).")
        validate_cached_video(cached, model, processor)
        try:
            budget = json.loads(metadata["stream_settings"])
            stream = cls(
                model,
                processor,
                attention_frames or int(metadata["attention_frames"]),
                budget["micro_clusters"],
                budget["chunk_clusters"],
            )
            tensors = {name: tensor for name, tensor in _read_tensors(path).items() if name.startswith("stream_")}
            if metadata.get("stream_tensors_sha256") != tensor_checksum(*(tensors[name] for name in sorted(tensors))):
                raise CacheFormatError(f"{path}: the stream tensors do not match their checksum: the file is damaged.")
            stream.codebook = IncrementalCodebook.from_state_tensors(
                stream.codebook.settings, int(metadata["stream_chunks"]), tensors, model.config.vqtoken_kmeans_backend
            )
            frame_times = [math.nan if time is None else float(time) for time in json.loads(metadata["frame_times"])]
            if len(frame_times) != stream.codebook.num_frames or int(metadata["stream_frames"]) != len(frame_times):
                raise CacheFormatError(
                    f"{path}: {len(frame_times)} frame times for {stream.codebook.num_frames} frames."
                )
            stream.frame_times = frame_times
            stream.frame_size = tuple(json.loads(metadata["frame_size"]))
            video = json.loads(metadata["video"])
            stream.video = _VideoSource(**video) if video is not None else None
            stream.closed = json.loads(metadata["stream_closed"])
            stream._fingerprint = metadata["source_fingerprint"].removeprefix("frames-chain:")
        except CacheFormatError:
            raise
        except (KeyError, TypeError, ValueError) as error:
            raise CacheFormatError(f"{path}: incomplete or inconsistent stream metadata ({error}).") from error
        return stream


def encode_stream(
    model,
    processor,
    source,
    output,
    fps: float,
    attention_frames: int | None = None,
    window: int = DEFAULT_NUM_FRAMES,
    overwrite: bool = False,
    progress=None,
) -> bool:
    """
    Streams a video file into the `.vqt` file `output` (see [`VideoStream.add_video`]), saving it every
    [`CHECKPOINT_CHUNKS`] chunks and at the end. When `output` already holds a stream of this video made by this
    model with these settings, it is resumed: only the frames after the last one it holds are read (a run that was
    interrupted, or a file that has grown).

    Args:
        overwrite: start afresh even when `output` exists.
        progress: a `tqdm` bar to advance over the frames to read, or `None`.

    Returns:
        whether frames were added (`False`: `output` already held the whole video).

    Raises:
        CacheMismatchError, CacheFormatError: `output` exists but is not a stream of this model and settings (pass
            `overwrite=True` to replace it); StreamError: it is a stream of another video.
    """
    output = Path(output)
    if output.exists() and not overwrite:
        stream = VideoStream.resume(output, model, processor, attention_frames)
    else:
        stream = VideoStream(model, processor, attention_frames)
    windows = stream.windows(source, fps, window)
    if progress is not None:
        progress.reset(total=windows.num_frames)
    before = stream.num_frames
    for chunk, decoded in enumerate(windows, start=1):
        stream.add_window(decoded)
        if progress is not None:
            progress.update(len(decoded.indices))
        if chunk % CHECKPOINT_CHUNKS == 0:
            stream.save(output)
    if stream.num_frames == before and output.exists():
        return False
    stream.save(output)
    return True


# ---------------------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------------------


def _read_tensors(path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _is_file(source) -> bool:
    return isinstance(source, (str, os.PathLike)) or (hasattr(source, "read") and hasattr(source, "seek"))


def _file_digests(source, start_bytes: int | None) -> tuple[int, str | None, str]:
    """
    `(length, sha256 of the first start_bytes bytes, sha256 of the whole)` of a file or seekable file object, read
    once; the first hash is `None` without `start_bytes`.
    """
    digest = hashlib.sha256()

    def read(stream) -> tuple[int, str | None, str]:
        start_sha256 = None
        if start_bytes is not None:
            hash_stream(digest, stream, start_bytes)
            start_sha256 = digest.hexdigest()  # the digest goes on with the rest
        hash_stream(digest, stream, None)
        return stream.tell(), start_sha256, digest.hexdigest()

    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as stream:
            return read(stream)
    position = source.tell()
    source.seek(0)
    try:
        return read(source)
    finally:
        source.seek(position)


__all__ = ["CHECKPOINT_CHUNKS", "STREAM_SAMPLING", "StreamError", "StreamSnapshot", "VideoStream", "encode_stream"]
