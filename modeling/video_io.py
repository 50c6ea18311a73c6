"""Video loading for VQToken: frame sampling from files, file objects and frame arrays.

This file ships with the model code (`trust_remote_code`): relative imports only, PyAV optional.

The single entry point is [`load_video`], which returns a [`DecodedVideo`]
holding only the sampled frames as an RGB `uint8` array `[T, H, W, 3]`;
[`decode_concurrently`] runs it over the videos of a batch side by side.

Sampling policies (exactly one applies per call):

* `num_frames=N` (the default, N=32 as in the released VQToken models): source frame
  indices `round(linspace(0, total - 1, N))` over the whole clip.  Clips shorter than
  `N` frames give repeated frames, so the result still has `N` frames.
* `fps=F`: one frame every `1/F` seconds of presentation time, starting at the first
  frame; each target time takes the frame on screen at that moment (the last frame whose
  timestamp is `<=` the target).  A frame is never returned twice, so asking for more
  than the source frame rate returns every frame once.

How files are decoded (see [`load_video`] for the reasoning):

1. *Index pass*: demux the video stream's packets without decoding them and record each
   packet's presentation timestamp.  This gives the exact frame count and the exact
   (possibly variable-rate) timestamps, without trusting the container header.
2. *Decode pass*: reopen the source, decode frames in order, convert only the sampled
   ones to RGB and stop after the last one is reached.  Memory holds the sampled frames
   plus one integer per source frame.
"""

from __future__ import annotations

import bisect
import io
import logging
import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Sequence, TypeVar, Union

import numpy as np


try:  # PyAV decodes files; frame arrays need nothing else, so the model code still loads without it
    import av
except ImportError:  # pragma: no cover - exercised only where PyAV is absent
    av = None

logger = logging.getLogger(__name__)

DEFAULT_NUM_FRAMES = 32
"""Frames sampled per clip when neither `num_frames` nor `fps` is given (VQToken release)."""

FRAME_LAYOUT = "channels_last"
"""The layout of every decoded frame, `[H, W, 3]`, given to processors as `input_data_format`: they cannot infer
it from a frame 1 to 3 pixels high and would read such a frame channels-first."""

VideoSource = Union[str, os.PathLike, BinaryIO, np.ndarray, Sequence[np.ndarray]]


class VideoDecodeError(ValueError):
    """A video could not be opened or decoded; the message names the source and the problem."""


@dataclass
class DecodedVideo:
    """Sampled frames of a video and where they came from.

    Attributes:
        frames: `uint8` array `[T, H, W, 3]`, RGB, displayed upright (container
            rotation applied).  `T` is the number of sampled frames.
        timestamps: `T` presentation times in seconds, relative to the first frame of
            the source.  For arrays without `source_fps` the frame rate is unknown and
            the times are frame indices (i.e. seconds at an assumed 1 frame per second).
        indices: `T` source frame indices (0-based, in presentation order).
        fps: average frame rate of the source, `None` for arrays without `source_fps`.
        duration: length of the source in seconds (frame count for arrays without
            `source_fps`, see `timestamps`).  For a file cut short this is the length
            the container declares, not the part that could be read.
        num_source_frames: number of frames in the source: counted from the packets for
            files, or declared by the container when the file is cut short.
        source: printable name of the source (path, file object name, or array summary).
    """

    frames: np.ndarray
    timestamps: list[float]
    indices: list[int]
    fps: float | None
    duration: float
    num_source_frames: int
    source: str


# --------------------------------------------------------------------------------------
# Sampling (pure functions on frame counts and timestamps)
# --------------------------------------------------------------------------------------


def uniform_indices(total: int, num_frames: int) -> list[int]:
    """Indices `round(linspace(0, total - 1, num_frames))`; repeats when `total < num_frames`.

    Args:
        total: number of source frames (>= 1).
        num_frames: number of indices to return (>= 1).

    Returns:
        `num_frames` non-decreasing indices in `[0, total - 1]`.
    """
    if total < 1 or num_frames < 1:
        raise ValueError(f"total and num_frames must be >= 1, got {total} and {num_frames}")
    return [int(i) for i in np.rint(np.linspace(0, total - 1, num_frames))]


def fps_indices(frame_times: Sequence[float], duration: float, fps: float) -> list[int]:
    """Indices of the frames on screen at times `0, 1/fps, 2/fps, ... < duration`.

    Args:
        frame_times: presentation time in seconds of each source frame, ascending,
            starting at 0 (index `i` is frame `i`).  May cover less than
            `duration` when the source is cut short.
        duration: length of the source in seconds.
        fps: sampling rate in frames per second of video time (> 0).

    Returns:
        Strictly increasing frame indices.  A target time past the last available frame's
        display interval maps to `len(frame_times)` (a frame that cannot be decoded), so
        callers can count what was lost; that index is returned at most once.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    num_targets = max(1, math.ceil(duration * fps - 1e-9))
    available_end = _frames_end(frame_times, duration, duration)
    picked: list[int] = []
    for k in range(num_targets):
        target = k / fps
        if target >= available_end:
            index = len(frame_times)
        else:
            index = max(0, bisect.bisect_right(frame_times, target + 1e-9) - 1)
        if not picked or index > picked[-1]:
            picked.append(index)
    return picked


def _frames_end(frame_times: Sequence[float], duration: float, single_frame_period: float) -> float:
    """End (seconds) of the display interval of the last frame in `frame_times`.

    The last frame lasts the average spacing of the frames (`single_frame_period` when
    there is only one), capped at `duration`.
    """
    if not frame_times:
        return 0.0
    if len(frame_times) >= 2:
        period = (frame_times[-1] - frame_times[0]) / (len(frame_times) - 1)
    else:
        period = single_frame_period
    return min(duration, frame_times[-1] + period)


def _check_policy(num_frames: int | None, fps: float | None) -> int | None:
    """Validate the sampling policy; return the resolved `num_frames` (None in fps mode)."""
    if num_frames is not None and fps is not None:
        raise ValueError(
            f"give either num_frames ({num_frames}) or fps ({fps}), not both: "
            "num_frames samples uniformly over the whole clip, fps samples by video time"
        )
    if fps is not None:
        if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a positive finite number, got {fps!r}")
        return None
    if num_frames is None:
        return DEFAULT_NUM_FRAMES
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
    return int(num_frames)


# --------------------------------------------------------------------------------------
# Arrays
# --------------------------------------------------------------------------------------


def _as_rgb_array(frames: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Convert `[T,H,W]`, `[T,H,W,1]`, `[T,H,W,3]` or `[T,H,W,4]` uint8 to `[T,H,W,3]`.

    A list of frames is stacked first (every frame must have the same shape).  Alpha is
    dropped (as PIL's `convert("RGB")` does); grayscale is repeated over 3 channels.
    """
    if isinstance(frames, np.ndarray):
        array = frames
    else:
        frame_list = [np.asarray(frame) for frame in frames]
        if not frame_list:
            raise ValueError("the frame list is empty")
        shapes = {frame.shape for frame in frame_list}
        if len(shapes) != 1:
            raise ValueError(f"all frames must have the same shape, got {sorted(shapes)}")
        array = np.stack(frame_list)
    if array.dtype != np.uint8:
        raise ValueError(f"frame arrays must be uint8, got dtype {array.dtype}")
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or array.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"frame array must be [T, H, W], [T, H, W, 1], [T, H, W, 3] or [T, H, W, 4], got shape {array.shape}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0 or array.shape[2] == 0:
        raise ValueError(f"frame array is empty, shape {array.shape}")
    if array.shape[-1] == 1:
        return np.repeat(array, 3, axis=-1)
    return array[..., :3]


def _load_array(
    frames: np.ndarray | Sequence[np.ndarray],
    num_frames: int | None,
    fps: float | None,
    source_fps: float | None,
) -> DecodedVideo:
    rgb = _as_rgb_array(frames)
    total = rgb.shape[0]
    rate = 1.0 if source_fps is None else float(source_fps)
    frame_times = [i / rate for i in range(total)]
    duration = total / rate
    if num_frames is not None:
        indices = uniform_indices(total, num_frames)
    else:
        if source_fps is None:
            raise ValueError("fps sampling of a frame array needs source_fps (its frame rate)")
        indices = fps_indices(frame_times, duration, fps)
    return DecodedVideo(
        frames=np.ascontiguousarray(rgb[indices]),
        timestamps=[frame_times[i] for i in indices],
        indices=indices,
        fps=None if source_fps is None else float(source_fps),
        duration=duration,
        num_source_frames=total,
        source=f"<array of {total} frames {rgb.shape[1]}x{rgb.shape[2]}>",
    )


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------


@dataclass
class _StreamIndex:
    """Result of the packet (index) pass over one video stream."""

    keys: list[int]  # sorted presentation timestamps (stream time base), or 0..n-1 if none
    has_pts: bool  # False: `keys` are decode ordinals, timestamps come from the frame rate
    frame_times: list[float]  # seconds since the first frame, per key
    num_packets: int  # all packets seen, including ones flagged for discard
    broken: str | None  # demuxer error that ended the pass early, if any


def source_name(source: object) -> str:
    """How messages name a video source: its path, a file object's `name`, or its type."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    name = getattr(source, "name", None)
    return str(name) if isinstance(name, (str, os.PathLike)) else f"<{type(source).__name__} object>"


class _Opener:
    """Opens the same path or file object more than once (one container per pass)."""

    def __init__(self, source: str | os.PathLike | BinaryIO, name: str):
        self.name = name
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            if not path.exists():
                raise FileNotFoundError(f"video file not found: {path}")
            if path.is_dir():
                raise VideoDecodeError(f"{path} is a directory, not a video file")
            self._path: str | None = str(path)
            self._file: BinaryIO | None = None
            self._start = 0
        else:
            if not hasattr(source, "read"):
                raise TypeError(
                    f"source must be a path, a binary file object or a frame array, got {type(source).__name__}"
                )
            self._path = None
            if not (hasattr(source, "seekable") and source.seekable()):
                # Two passes need to rewind; a pipe or socket is buffered in memory once.
                logger.info("%s is not seekable; reading it into memory", name)
                source = io.BytesIO(source.read())
            self._file = source
            self._start = source.tell()

    def open(self) -> "av.container.InputContainer":
        try:
            if self._path is not None:
                return av.open(self._path, mode="r")
            self._file.seek(self._start)
            return av.open(self._file, mode="r")
        except av.error.FFmpegError as error:
            problem = _diagnose_file(self._path) if self._path is not None else None
            raise VideoDecodeError(
                f"{self.name} is not a readable video file{f': it is {problem}' if problem else ''} "
                f"({_describe(error)})"
            ) from error


def _diagnose_file(path: str) -> str | None:
    """Why a file FFmpeg cannot open is not a video, when its bytes tell: empty, or an MP4/MOV file cut short."""
    size = os.path.getsize(path)
    if size == 0:
        return "empty (0 bytes)"
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8 or head[4:8] != b"ftyp":
            return None
        # ISO base media (MP4/MOV): top-level boxes, each `size (4 bytes) + type (4 bytes)`, must tile the file
        position, boxes = 0, []
        while position + 8 <= size:
            handle.seek(position)
            header = handle.read(16)
            box_size, box_type = int.from_bytes(header[:4], "big"), header[4:8]
            if box_size == 1 and len(header) == 16:
                box_size = int.from_bytes(header[8:16], "big")
            elif box_size == 0:
                box_size = size - position
            if box_size < 8:
                return None
            boxes.append(box_type)
            if position + box_size > size:
                return (
                    f"truncated, an MP4/MOV file cut off at {size} bytes inside a "
                    f"{box_type.decode(errors='replace')!r} box that needs {position + box_size} bytes"
                )
            position += box_size
    if b"moov" not in boxes:
        return "truncated or incomplete, an MP4/MOV file without its index (no 'moov' box)"
    return None


def _describe(error: BaseException) -> str:
    if isinstance(error, av.error.FFmpegError) and error.strerror:
        return error.strerror
    return f"{type(error).__name__}: {error}"


def _video_stream(container, name: str):
    if not container.streams:
        raise VideoDecodeError(
            f"{name} is not a readable video file (no streams found: not a video, or cut off "
            "before its stream header/index)"
        )
    if not container.streams.video:
        kinds = sorted({stream.type for stream in container.streams}) or ["none"]
        raise VideoDecodeError(f"{name} has no video stream (streams: {', '.join(kinds)})")
    return container.streams.video[0]


def _index_stream(container, stream) -> _StreamIndex:
    """Demux (not decode) every packet of `stream` and record presentation timestamps."""
    pts_values: list[int] = []
    num_packets = 0
    missing_pts = False
    broken = None
    try:
        for packet in container.demux(stream):
            if packet.size == 0:  # end-of-stream flush packet
                continue
            num_packets += 1
            if packet.is_discard:  # e.g. dropped by an MP4 edit list, never displayed
                continue
            if packet.pts is None:
                missing_pts = True
            else:
                pts_values.append(packet.pts)
    except av.error.FFmpegError as error:
        broken = _describe(error)

    count = num_packets if missing_pts else len(pts_values)
    rate = _average_rate(stream)
    if missing_pts or not pts_values:
        period = 1.0 / rate if rate else 1.0
        return _StreamIndex(list(range(count)), False, [i * period for i in range(count)], num_packets, broken)
    pts_values.sort()
    time_base = stream.time_base
    first = pts_values[0]
    return _StreamIndex(pts_values, True, [float((p - first) * time_base) for p in pts_values], num_packets, broken)


def _average_rate(stream) -> float | None:
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else None


def _declared_duration(container, stream) -> float | None:
    """Length of the video stream (seconds) according to the container, if it says.

    Order: the stream's own duration (MP4, AVI); Matroska's per-track `DURATION` tag
    (`HH:MM:SS.fraction`); the container duration, only when the video is the sole
    stream (otherwise a longer audio track would be mistaken for missing video).
    """
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = stream.metadata.get("DURATION")
    if tag:
        try:
            hours, minutes, seconds = tag.split(":")
            return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        except ValueError:
            logger.debug("ignoring unparsable DURATION tag %r", tag)
    if container.duration and len(container.streams) == 1:
        return container.duration / av.time_base
    return None


def _display_rotation(frame, stream) -> int:
    """Counter-clockwise quarter turns that make `frame` display upright (0..3).

    `VideoFrame.rotation` reads the display matrix side data (FFmpeg's
    `av_display_rotation_get`: counter-clockwise degrees; a phone's portrait clip reads
    -90).  Files whose rotation only survives as the legacy `rotate` tag (clockwise
    degrees) fall back to that tag.  Flips in the display matrix are not applied.
    """
    degrees = float(frame.rotation)
    if degrees == 0.0:
        tag = stream.metadata.get("rotate")
        if tag:
            try:
                degrees = -float(tag)
            except ValueError:
                logger.warning("ignoring unparsable rotate tag %r", tag)
    quarter_turns = round(degrees / 90.0)
    if abs(degrees - 90.0 * quarter_turns) > 1.0:
        logger.warning("rotation of %.1f degrees is not a multiple of 90; using %d", degrees, 90 * quarter_turns)
    return quarter_turns % 4


def _to_rgb(frame, stream, size: tuple[int, int] | None) -> np.ndarray:
    """Decoded frame -> upright `[H, W, 3]` uint8 RGB; `size` = (width, height) to force."""
    if size is None:
        array = frame.to_ndarray(format="rgb24")
    else:  # the stream changed resolution: match the first sampled frame
        array = frame.to_ndarray(format="rgb24", width=size[0], height=size[1])
    turns = _display_rotation(frame, stream)
    return np.ascontiguousarray(np.rot90(array, k=turns)) if turns else array


@dataclass
class _FilePlan:
    """What the index pass of a file decided: which frames to decode, out of how many."""

    opener: _Opener
    name: str
    keys: list[int]  # from the index pass: sorted presentation timestamps, or decode ordinals
    has_pts: bool
    frame_times: list[float]  # seconds since the first frame, per key
    broken: str | None  # demuxer error that ended the index pass early, if any
    available: int  # frames the index pass found
    total: int  # frames in the source (more than `available` when cut short)
    duration: float
    rate: float | None
    truncated: bool
    wanted: list[int]  # sampled frame indices (some may be >= available: lost)


def _plan_file(source: str | os.PathLike | BinaryIO, num_frames: int | None, fps: float | None) -> _FilePlan:
    """Index pass over a file and the frame indices to decode."""
    name = source_name(source)
    if av is None:
        raise ImportError(f"decoding the video file {name} needs PyAV: pip install av")
    opener = _Opener(source, name)

    with opener.open() as container:
        stream = _video_stream(container, name)
        index = _index_stream(container, stream)
        declared_frames = int(stream.frames or 0)
        declared_duration = _declared_duration(container, stream)
        rate = _average_rate(stream)
    available = len(index.keys)
    if available == 0:
        detail = f": {index.broken}" if index.broken else ""
        raise VideoDecodeError(f"{name} has no decodable video frame{detail}")

    indexed_end = _frames_end(index.frame_times, math.inf, 1.0 / rate if rate else 1.0)
    if rate is None:
        rate = available / indexed_end if indexed_end > 0 else None
    # A cut-off file still declares its full length in the header; when the packets fall
    # short of it, sample over the declared clip and report the unreachable frames.
    total = available
    duration = indexed_end
    if declared_frames > index.num_packets:
        total = available + (declared_frames - index.num_packets)
    elif declared_duration and rate and declared_duration * rate > 1.01 * available + 1.5:
        total = int(round(declared_duration * rate))
    truncated = total > available or index.broken is not None
    if total > available:
        duration = max(indexed_end, declared_duration or 0.0, total / rate if rate else 0.0)

    if num_frames is not None:
        wanted = uniform_indices(total, num_frames)
    else:
        wanted = fps_indices(index.frame_times, duration, fps)
    return _FilePlan(
        opener,
        name,
        index.keys,
        index.has_pts,
        index.frame_times,
        index.broken,
        available,
        total,
        duration,
        rate,
        truncated,
        wanted,
    )


def _decode_planned(plan: _FilePlan, errors: list[str]) -> Iterator[tuple[np.ndarray, float, int]]:
    """Decode pass: yields `(rgb, seconds, index)` for every reachable sampled frame, in order.

    A decoding error ends the pass; its description is appended to `errors`.
    """
    reachable = [i for i in plan.wanted if i < plan.available]
    if not reachable:
        return
    keys = plan.keys
    with plan.opener.open() as container:
        stream = _video_stream(container, plan.name)
        stream.codec_context.thread_type = "AUTO"
        size = None
        slot = 0  # next position in `reachable`
        first_key = keys[0]
        try:
            for ordinal, frame in enumerate(container.decode(stream)):
                if not plan.has_pts:
                    key = ordinal
                elif frame.pts is not None:
                    key = frame.pts
                else:  # rare: the decoder lost the timestamp; assume presentation order
                    key = keys[min(ordinal, plan.available - 1)]
                # Every sampled slot whose target key has been reached takes this frame:
                # normally the exact frame; the next one if the decoder dropped it.
                hits = 0
                while slot + hits < len(reachable) and keys[reachable[slot + hits]] <= key:
                    hits += 1
                if hits:
                    rgb = _to_rgb(frame, stream, size)
                    if size is None:
                        size = (frame.width, frame.height)
                    if plan.has_pts and frame.pts is not None:
                        seconds = float((frame.pts - first_key) * stream.time_base)
                    else:
                        seconds = ordinal / plan.rate if plan.rate else float(ordinal)
                    for offset in range(hits):
                        yield rgb, seconds, reachable[slot + offset]
                    slot += hits
                if slot == len(reachable):
                    break
        except av.error.FFmpegError as error:
            errors.append(_describe(error))


def _check_recovered(plan: _FilePlan, recovered: int, errors: list[str], min_frames: int | None):
    """Warns or raises when fewer sampled frames were decoded than planned (see `load_video`'s `min_frames`)."""
    name = plan.name
    decode_error = errors[0] if errors else None
    requested = len(plan.wanted)
    if plan.broken is not None and plan.total == plan.available:
        warnings.warn(
            f"{name}: reading packets failed after {plan.available} frames ({plan.broken}); "
            "sampled from those frames only",
            RuntimeWarning,
            stacklevel=4,
        )
    if recovered == 0 and requested > 0:
        problem = decode_error or plan.broken or "the decoder returned no frames"
        raise VideoDecodeError(f"{name} has no decodable video frame ({problem})")
    if recovered < requested:
        floor = min_frames if min_frames is not None else max(1, math.ceil(requested / 2))
        reason = (
            decode_error
            or plan.broken
            or (
                f"stream ends after {plan.available} of {plan.total} frames"
                if plan.truncated
                else "decoder stopped early"
            )
        )
        message = (
            f"{name}: video stream breaks part-way ({reason}); recovered {recovered} of {requested} sampled frames"
        )
        if recovered < floor:
            raise VideoDecodeError(f"{message}, fewer than the minimum of {floor}")
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def _load_file(
    source: str | os.PathLike | BinaryIO,
    num_frames: int | None,
    fps: float | None,
    min_frames: int | None,
) -> DecodedVideo:
    plan = _plan_file(source, num_frames, fps)
    errors: list[str] = []
    decoded = list(_decode_planned(plan, errors))
    _check_recovered(plan, len(decoded), errors, min_frames)
    return _decoded_video(decoded, plan.name, plan.rate, plan.duration, plan.total)


def _decoded_video(
    decoded: list[tuple[np.ndarray, float, int]],
    source: str,
    fps: float | None,
    duration: float,
    num_source_frames: int,
) -> DecodedVideo:
    """A [`DecodedVideo`] from the `(rgb, seconds, index)` triples the decode pass yields."""
    return DecodedVideo(
        frames=np.stack([rgb for rgb, _, _ in decoded]),
        timestamps=[seconds for _, seconds, _ in decoded],
        indices=[index for _, _, index in decoded],
        fps=fps,
        duration=duration,
        num_source_frames=num_source_frames,
        source=source,
    )


# --------------------------------------------------------------------------------------
# Windows (long videos, growing files, live containers)
# --------------------------------------------------------------------------------------


@dataclass
class FrameWindows:
    """The sampled frames of a video, decoded `window` at a time: iterate to get one
    [`DecodedVideo`] per window (the last one may be shorter).

    Attributes:
        source: printable name of the source.
        num_frames: frames the iteration will yield (`None` for a live container).
        fps: average frame rate of the source (`None` when unknown).
        duration: length of the source in seconds (`None` for a live container).
        num_source_frames: frames in the source (`None` for a live container).
    """

    source: str
    num_frames: int | None
    fps: float | None
    duration: float | None
    num_source_frames: int | None
    _frames: Iterator[tuple[np.ndarray, float, int]]
    _window: int
    _finish: Callable[[int], None]  # called with the number of frames yielded, once the iteration ends

    def __iter__(self) -> Iterator[DecodedVideo]:
        recovered = 0
        batch: list[tuple[np.ndarray, float, int]] = []
        for item in self._frames:
            batch.append(item)
            if len(batch) == self._window:
                recovered += len(batch)
                yield self._decoded(batch)
                batch = []
        if batch:
            recovered += len(batch)
            yield self._decoded(batch)
        self._finish(recovered)

    def _decoded(self, batch: list[tuple[np.ndarray, float, int]]) -> DecodedVideo:
        # a live container's length so far: up to the window's last frame
        duration = self.duration if self.duration is not None else batch[-1][1]
        num_source_frames = self.num_source_frames if self.num_source_frames is not None else batch[-1][2] + 1
        return _decoded_video(batch, self.source, self.fps, duration, num_source_frames)


def _container_frames(container, fps: float, after_index: int) -> Iterator[tuple[np.ndarray, float, int]]:
    """`(rgb, seconds, index)` of the frames on screen at `0, 1/fps, 2/fps, ...` of an open
    container, decided as frames arrive: a target is settled by the first frame shown after it,
    and is then given the frame before (the rule of [`fps_indices`], which needs every
    timestamp up front).  Frames with index `<= after_index` are skipped."""
    stream = _video_stream(container, source_name(container))
    size = None
    first_pts = None
    target = 0  # next target number
    previous = None  # (frame, seconds, index) of the last frame shown so far
    last_yielded = -1
    ordinal = -1

    def take(entry):
        nonlocal size
        frame, seconds, index = entry
        rgb = _to_rgb(frame, stream, size)
        if size is None:
            size = (frame.width, frame.height)
        return rgb, seconds, index

    for ordinal, frame in enumerate(container.decode(stream)):
        if frame.pts is not None and stream.time_base is not None:
            if first_pts is None:
                first_pts = frame.pts
            seconds = float((frame.pts - first_pts) * stream.time_base)
        else:
            rate = _average_rate(stream)
            seconds = ordinal / rate if rate else float(ordinal)
        settled = False
        while previous is not None and target / fps + 1e-9 < seconds:
            settled = True
            target += 1
        if settled and previous[2] > last_yielded:
            last_yielded = previous[2]
            if previous[2] > after_index:
                yield take(previous)
        previous = (frame, seconds, ordinal)
    if previous is None:
        return
    # the last frame is on screen for the average spacing of the frames
    end = previous[1] + (previous[1] / ordinal if ordinal > 0 else 1.0 / fps)
    if target / fps < end and previous[2] > last_yielded and previous[2] > after_index:
        yield take(previous)


def read_windows(
    source: str | os.PathLike | BinaryIO,
    fps: float,
    *,
    window: int = DEFAULT_NUM_FRAMES,
    after_index: int = -1,
) -> FrameWindows:
    """Sample a video like [`load_video`] with `fps`, but decode it `window` frames at a
    time, so that memory holds one window whatever the length of the video.

    Args:
        source: a path or binary file object (sampled exactly as [`load_video`] samples
            it: same frames, same times), or an open PyAV input container, e.g. a live
            source, read once from where it is (frames are sampled as they arrive).
        fps: one frame per `1/fps` seconds of presentation time (the rule of [`load_video`];
            a number of frames spread over the whole video would change as a file grows).
        window: frames per yielded [`DecodedVideo`].
        after_index: only frames whose source index is larger are yielded: pass the last
            index already taken to go on with a file that has grown, or after a pause.

    Returns:
        [`FrameWindows`]; the file's index pass has run, no frame is decoded yet.
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive integer, got {window!r}")
    if fps is None:
        raise ValueError("read_windows samples with fps (frames per second of video time), got None")
    _check_policy(None, fps)
    if av is not None and isinstance(source, av.container.InputContainer):
        stream = _video_stream(source, source_name(source))
        return FrameWindows(
            source_name(source),
            None,
            _average_rate(stream),
            None,
            None,
            _container_frames(source, fps, after_index),
            window,
            lambda recovered: None,
        )
    plan = _plan_file(source, None, fps)
    plan.wanted = [index for index in plan.wanted if index > after_index]
    errors: list[str] = []
    return FrameWindows(
        plan.name,
        len([index for index in plan.wanted if index < plan.available]),
        plan.rate,
        plan.duration,
        plan.total,
        _decode_planned(plan, errors),
        window,
        lambda recovered: _check_recovered(plan, recovered, errors, None),
    )


def load_video(
    source: VideoSource,
    num_frames: int | None = None,
    fps: float | None = None,
    *,
    min_frames: int | None = None,
    source_fps: float | None = None,
) -> DecodedVideo:
    """Load a video and sample frames from it.

    Args:
        source: a path (`str`/`os.PathLike`); a binary file object (read from its
            current position; a non-seekable one is read into memory); or frames: a
            `uint8` array `[T, H, W]` (grayscale), `[T, H, W, 1]`, `[T, H, W, 3]`
            (RGB) or `[T, H, W, 4]` (RGBA, alpha dropped), or a list of such frames.
        num_frames: sample this many frames uniformly over the whole clip (indices
            `round(linspace(0, total - 1, num_frames))`).  Defaults to
            `DEFAULT_NUM_FRAMES` (32) when `fps` is not given.
        fps: instead of `num_frames`, sample one frame per `1/fps` seconds of
            presentation time (see the module docstring).  Giving both raises `ValueError`.
        min_frames: files only.  When the stream breaks part-way (a cut-off file or a
            decoding error) the frames decoded before the break are returned with a
            `RuntimeWarning` if at least this many remain, otherwise
            [`VideoDecodeError`] is raised.  Defaults to half the number of sampled
            frames, rounded up.
        source_fps: arrays only: their frame rate, which gives timestamps in seconds and
            enables `fps` sampling.

    Returns:
        [`DecodedVideo`] with `frames` `uint8 [T, H, W, 3]`.

    Raises:
        FileNotFoundError: the path does not exist.
        VideoDecodeError: not a video container, no video stream (e.g. audio only), no
            decodable frame, or too few frames before a break.  Subclass of `ValueError`.
        ValueError: invalid arguments or array shapes/dtypes.

    Why two passes over a file: the header's frame count and duration are missing for
    Matroska/WebM, only approximate for variable frame rate, and wrong for cut-off files.
    Demuxing packets without decoding them is cheap (no pixel work; I/O over the file)
    and gives the exact number of frames and every frame's presentation timestamp, so
    the uniform indices are exact and variable frame rate clips get their real times.
    Frames are then decoded sequentially and only the sampled ones are converted to RGB
    and kept; decoding stops after the last sampled frame.  Seeking was not used: it is
    imprecise across formats (keyframe granularity) and file objects.
    """
    num_frames = _check_policy(num_frames, fps)
    if min_frames is not None and (isinstance(min_frames, bool) or min_frames < 1):
        raise ValueError(f"min_frames must be a positive integer, got {min_frames!r}")
    if source_fps is not None and not (math.isfinite(source_fps) and source_fps > 0):
        raise ValueError(f"source_fps must be a positive finite number, got {source_fps!r}")

    if isinstance(source, np.ndarray) or (isinstance(source, (list, tuple)) and not isinstance(source, (str, bytes))):
        if min_frames is not None:
            raise ValueError("min_frames applies to files only; frame arrays cannot break")
        return _load_array(source, num_frames, fps, source_fps)
    if source_fps is not None:
        raise ValueError("source_fps applies to frame arrays only; files carry their own rate")
    return _load_file(source, num_frames, fps, min_frames)


MAX_DECODING_THREADS = 8
"""Videos [`decode_concurrently`] decodes at once, at most (and never more than the machine's cores)."""

Item = TypeVar("Item")
Result = TypeVar("Result")


def _source_identity(source) -> tuple:
    """What makes two sources the same video: the same absolute path, or the same object (file object, array)."""
    if isinstance(source, (str, os.PathLike)):
        return ("path", os.path.abspath(os.fspath(source)))
    return ("object", id(source))


def decode_concurrently(
    decode: Callable[[Item], Result],
    items: Sequence[Item],
    source: Callable[[Item], object] = lambda item: item,
) -> list[Result]:
    """`[decode(item) for item in items]`, several items at once in threads, results in the order of `items`.

    PyAV releases the interpreter lock while FFmpeg demuxes and decodes, so the videos of a batch decode side by side.
    Items whose `source(item)` is the same video (the same path, or the same file object or array) are decoded once
    and share the result: two questions about one video cost one decoding, and one file object is never read by two
    threads at once. An exception raised by `decode` reaches the caller as it would from the loop: the first one in
    the order of `items`, once the items before it are done; items not started by then are not decoded.
    """
    first_of: dict[tuple, int] = {}
    distinct: list[Item] = []
    position_of_item = []
    for item in items:
        identity = _source_identity(source(item))
        if identity not in first_of:
            first_of[identity] = len(distinct)
            distinct.append(item)
        position_of_item.append(first_of[identity])
    workers = min(len(distinct), MAX_DECODING_THREADS, os.cpu_count() or 1)
    if workers <= 1:
        results = [decode(item) for item in distinct]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
            results = list(pool.map(decode, distinct))
    return [results[position] for position in position_of_item]


__all__ = [
    "DEFAULT_NUM_FRAMES",
    "FRAME_LAYOUT",
    "DecodedVideo",
    "FrameWindows",
    "VideoDecodeError",
    "VideoSource",
    "decode_concurrently",
    "fps_indices",
    "load_video",
    "read_windows",
    "source_name",
    "uniform_indices",
]
