"""Deterministic synthetic video clips for demos and tests.

Two helpers:

* :func:`make_moving_square_clip` builds a ``uint8`` array ``[T, H, W, 3]`` showing a
  solid coloured square sliding across a flat background.  Everything that is not
  given explicitly (background colour, square size, the square's position across the
  direction of motion) is drawn from ``numpy.random.default_rng(seed)``, so the same
  arguments always give the same pixels.
* :func:`write_clip` encodes such an array to a video file with PyAV.

PyAV is needed by :func:`write_clip` only: clips as arrays are made without it (machines without video codecs, such as
the GPU machines the GPU check runs on, pass frame arrays to the model directly).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np

try:  # only write_clip encodes
    import av
except ImportError:  # pragma: no cover - exercised only where PyAV is absent
    av = None

logger = logging.getLogger(__name__)

_DIRECTIONS = ("right", "left", "up", "down")

# Encoders tried, in order, when ``write_clip(codec=None)``; each with the pixel format used.
_DEFAULT_CODECS: tuple[tuple[str, str], ...] = (
    ("libx264", "yuv420p"),
    ("mpeg4", "yuv420p"),
    ("mjpeg", "yuvj420p"),
)


def make_moving_square_clip(
    num_frames: int,
    height: int,
    width: int,
    color: tuple[int, int, int] = (255, 0, 0),
    direction: str = "right",
    seed: int = 0,
) -> np.ndarray:
    """Return a clip of a coloured square moving in a straight line.

    The square starts touching the edge it moves away from and, at the last frame,
    touches the opposite edge (a single-frame clip shows the start position).

    Args:
        num_frames: number of frames ``T`` (>= 1).
        height: frame height ``H`` in pixels (>= 1).
        width: frame width ``W`` in pixels (>= 1).
        color: RGB colour of the square, each component in ``[0, 255]``.
        direction: ``"right"``, ``"left"``, ``"up"`` or ``"down"``.
        seed: seeds the background colour (dark, each channel in ``[0, 96)``), the
            square side (between 1/5 and 1/3 of ``min(H, W)``, at least 1 pixel) and the
            square's offset across the direction of motion.

    Returns:
        ``np.ndarray`` of dtype ``uint8`` and shape ``[T, H, W, 3]`` (RGB).
    """
    if num_frames < 1 or height < 1 or width < 1:
        raise ValueError(
            f"num_frames, height and width must be >= 1, got {num_frames}, {height}, {width}"
        )
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be one of {_DIRECTIONS}, got {direction!r}")
    if len(color) != 3 or not all(0 <= int(c) <= 255 for c in color):
        raise ValueError(f"color must be three integers in [0, 255], got {color!r}")

    rng = np.random.default_rng(seed)
    background = rng.integers(0, 96, size=3)
    short_side = min(height, width)
    side = int(rng.integers(max(1, short_side // 5), max(1, short_side // 3) + 1))
    side = max(1, min(side, short_side))

    horizontal = direction in ("right", "left")
    # Extent of travel along the motion axis, and the fixed offset across it.
    travel = (width if horizontal else height) - side
    across = int(rng.integers(0, (height if horizontal else width) - side + 1))

    clip = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    clip[...] = background.astype(np.uint8)
    square_color = np.asarray(color, dtype=np.uint8)
    for t in range(num_frames):
        progress = t / (num_frames - 1) if num_frames > 1 else 0.0
        along = int(round(progress * travel))
        if direction in ("left", "up"):
            along = travel - along
        if horizontal:
            clip[t, across : across + side, along : along + side] = square_color
        else:
            clip[t, along : along + side, across : across + side] = square_color
    return clip


def _encoder_available(codec: str) -> bool:
    try:
        av.Codec(codec, "w")
    except (av.error.FFmpegError, ValueError):
        return False
    return True


def _pick_codec(codec: str | None) -> tuple[str, str]:
    """Return ``(codec_name, pix_fmt)`` for ``codec`` or the first available default."""
    if codec is not None:
        if not _encoder_available(codec):
            raise ValueError(f"video encoder {codec!r} is not available in this PyAV build")
        for name, pix_fmt in _DEFAULT_CODECS:
            if name == codec:
                return name, pix_fmt
        return codec, "yuv420p"
    for name, pix_fmt in _DEFAULT_CODECS:
        if _encoder_available(name):
            return name, pix_fmt
    raise RuntimeError(
        f"none of the encoders {[name for name, _ in _DEFAULT_CODECS]} is available in this PyAV build"
    )


def write_clip(
    path: str | Path,
    frames: np.ndarray | Sequence[np.ndarray],
    fps: int = 8,
    codec: str | None = None,
) -> Path:
    """Encode RGB frames to a video file with PyAV.

    Args:
        path: output file; the container format follows the suffix (``.mp4`` is usual).
        frames: ``uint8`` array ``[T, H, W, 3]`` (or a sequence of ``[H, W, 3]`` arrays).
        fps: constant frame rate written to the stream (integer frames per second).
        codec: encoder name (e.g. ``"libx264"``, ``"mpeg4"``, ``"mjpeg"``); ``None`` picks
            the first available of libx264, mpeg4, mjpeg.

    The chosen pixel format subsamples chroma 2x2 (``yuv420p``/``yuvj420p``), which needs
    even frame sizes; odd heights/widths are padded by one row/column that repeats the
    last one, so the decoded clip may be one pixel taller/wider than ``frames``.

    Returns:
        ``Path`` of the written file.
    """
    array = np.asarray(frames)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3 or array.shape[0] < 1:
        raise ValueError(
            f"frames must be a non-empty uint8 array [T, H, W, 3], got dtype {array.dtype} "
            f"and shape {array.shape}"
        )
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if av is None:
        raise RuntimeError("write_clip needs PyAV (`pip install av`) to encode video files")
    codec_name, pix_fmt = _pick_codec(codec)

    pad_h, pad_w = array.shape[1] % 2, array.shape[2] % 2
    if pix_fmt.endswith("420p") and (pad_h or pad_w):
        logger.info(
            "write_clip: padding %dx%d frames to even size %dx%d for %s",
            array.shape[2], array.shape[1], array.shape[2] + pad_w, array.shape[1] + pad_h, pix_fmt,
        )
        array = np.pad(array, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")

    path = Path(path)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec_name, rate=int(fps))
        stream.height = array.shape[1]
        stream.width = array.shape[2]
        stream.pix_fmt = pix_fmt
        for frame_array in array:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_array), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path
