"""Helpers that write small video/audio files with PyAV for the video loading tests.

Not library code.  Frames that must be identified after lossy compression use
:func:`index_colors`: frame ``i`` is a solid colour from a palette whose entries differ by
at least 64 in one channel, and :func:`recover_indices` maps decoded frames back to ``i``.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Sequence

import av
import numpy as np


_LEVELS = (0, 64, 128, 192, 255)
PALETTE = np.array([(r, g, b) for r in _LEVELS for g in _LEVELS for b in _LEVELS], dtype=np.uint8)  # [125, 3]


def encoder_available(codec: str) -> bool:
    """Whether this PyAV build can encode with ``codec``."""
    try:
        av.Codec(codec, "w")
    except (av.error.FFmpegError, ValueError):
        return False
    return True


def index_colors(num_frames: int, height: int, width: int) -> np.ndarray:
    """``uint8 [T, H, W, 3]``: frame ``i`` is filled with ``PALETTE[i]`` (T <= 125)."""
    if num_frames > len(PALETTE):
        raise ValueError(f"at most {len(PALETTE)} distinguishable frames, asked {num_frames}")
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    frames[...] = PALETTE[:num_frames, None, None, :]
    return frames


def recover_indices(frames: np.ndarray, num_source_frames: int) -> list[int]:
    """Palette index of each decoded frame ``[T, H, W, 3]`` (nearest mean colour)."""
    means = frames.reshape(frames.shape[0], -1, 3).mean(axis=1)  # [T, 3]
    palette = PALETTE[:num_source_frames].astype(np.float64)  # [N, 3]
    distances = ((means[:, None, :] - palette[None, :, :]) ** 2).sum(axis=-1)  # [T, N]
    return [int(i) for i in distances.argmin(axis=1)]


def write_test_video(
    path: str | Path,
    frames: np.ndarray | Sequence[np.ndarray],
    fps: int = 10,
    codec: str = "mpeg4",
    pix_fmt: str = "yuv420p",
    pts_seconds: Sequence[float] | None = None,
    rotation: int | None = None,
) -> Path:
    """Encode ``frames`` (``uint8 [T, H, W, 3]`` RGB) to ``path``.

    Args:
        fps: nominal stream rate; with ``pts_seconds`` it only sets the encoder's rate.
        codec, pix_fmt: encoder and its pixel format (e.g. ``"ffv1"``/``"gray"``).
        pts_seconds: presentation time of each frame (variable frame rate); uses a
            1/1000 s time base.
        rotation: display rotation in counter-clockwise degrees written as the stream's
            display matrix (``-90`` is how a phone marks a portrait recording).
    """
    frames = np.asarray(frames)
    path = Path(path)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1], frames.shape[2]
        stream.pix_fmt = pix_fmt
        if pts_seconds is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            if pts_seconds is not None:
                frame.pts = int(round(pts_seconds[i] * 1000))
                frame.time_base = Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def write_audio_only(path: str | Path, codec: str = "mp2", seconds: float = 0.5) -> Path:
    """Write a file with a single mono audio stream (a 440 Hz tone) and no video."""
    path = Path(path)
    sample_rate = 44100
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=sample_rate)
        stream.layout = "mono"
        samples_per_frame = 1152
        total = int(seconds * sample_rate)
        for start in range(0, total, samples_per_frame):
            t = np.arange(start, start + samples_per_frame) / sample_rate
            tone = (0.3 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(tone[None, :], format="s16", layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = start
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def write_video_with_longer_audio(path: str | Path, frames: np.ndarray, fps: int, audio_seconds: float) -> Path:
    """Matroska file with an mpeg4 video stream and a silent mp2 track lasting ``audio_seconds``."""
    path = Path(path)
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("mpeg4", rate=fps)
        video.height, video.width = frames.shape[1], frames.shape[2]
        video.pix_fmt = "yuv420p"
        audio = container.add_stream("mp2", rate=44100)
        audio.layout = "mono"
        for array in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")))
        container.mux(video.encode())
        for start in range(0, int(audio_seconds * 44100), 1152):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1152), np.int16), format="s16", layout="mono")
            frame.sample_rate = 44100
            frame.pts = start
            container.mux(audio.encode(frame))
        container.mux(audio.encode())
    return path


def truncate_copy(source: str | Path, target: str | Path, fraction: float) -> Path:
    """Copy the first ``fraction`` of ``source``'s bytes to ``target``."""
    data = Path(source).read_bytes()
    target = Path(target)
    target.write_bytes(data[: int(len(data) * fraction)])
    return target
