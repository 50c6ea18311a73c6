"""
Deterministic synthetic video clips for the demo, the tests, the benchmarks and the synthetic training set.

[`render_clip`] draws what a [`ClipSpec`] describes: 1 to 4 identical objects (a shape, a colour) sliding from one edge
to the opposite one over a dark background, each in its own lane across the direction of motion. Everything the spec
does not fix (background shade, object size, lanes, phases, the jitter of a named colour) is drawn from
`numpy.random.default_rng(spec.seed)`, so a spec always gives the same pixels. [`write_clip`] encodes frames to a
video file with PyAV.

PyAV is needed by [`write_clip`] only: clips as arrays are made without it (machines without video codecs, such as
the GPU machines the GPU check runs on, pass frame arrays to the model directly).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np


try:  # only write_clip encodes
    import av
except ImportError:  # pragma: no cover - exercised only where PyAV is absent
    av = None

logger = logging.getLogger(__name__)

COLOURS = {"red": (230, 30, 30), "green": (30, 210, 30), "blue": (40, 80, 255), "yellow": (240, 230, 40)}
SHAPES = ("square", "circle", "triangle", "diamond")
DIRECTIONS = ("left", "right", "up", "down")
MAX_OBJECTS = 4

# Encoders tried, in order, when `write_clip(codec=None)`; each with the pixel format used.
_DEFAULT_CODECS: tuple[tuple[str, str], ...] = (
    ("libx264", "yuv420p"),
    ("mpeg4", "yuv420p"),
    ("mjpeg", "yuvj420p"),
)


@dataclass(frozen=True)
class ClipSpec:
    """
    What one synthetic clip shows.

    Attributes:
        colour: a name of `COLOURS` (its RGB value jittered by up to 15 per channel, as in the training set), or an
            exact RGB triple.
        shape: one of `SHAPES`.
        direction: one of `DIRECTIONS`.
        count: number of objects, 1 to `MAX_OBJECTS`.
        seed: seeds everything else (see the module docstring).
    """

    colour: str | tuple[int, int, int]
    shape: str = "square"
    direction: str = "right"
    count: int = 1
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.colour, str):
            if self.colour not in COLOURS:
                raise ValueError(f"colour must be one of {sorted(COLOURS)} or an RGB triple, got {self.colour!r}")
        elif len(self.colour) != 3 or not all(0 <= int(c) <= 255 for c in self.colour):
            raise ValueError(f"colour must be three integers in [0, 255], got {self.colour!r}")
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {SHAPES}, got {self.shape!r}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if not 1 <= self.count <= MAX_OBJECTS:
            raise ValueError(f"count must lie in 1..{MAX_OBJECTS}, got {self.count}")


def shape_mask(shape: str, side: int) -> np.ndarray:
    """A boolean `(side, side)` mask of `shape` ("square", "circle", "triangle" or "diamond")."""
    centre = (side - 1) / 2
    rows, cols = np.mgrid[0:side, 0:side]
    if shape == "square":
        return np.ones((side, side), dtype=bool)
    if shape == "circle":
        return (rows - centre) ** 2 + (cols - centre) ** 2 <= (side / 2) ** 2
    if shape == "diamond":
        return np.abs(rows - centre) + np.abs(cols - centre) <= side / 2
    if shape == "triangle":
        # apex at the top, base along the bottom row
        half_width = (rows + 1) / side * (side / 2)
        return np.abs(cols - centre) <= half_width
    raise ValueError(f"Unknown shape {shape!r}; expected one of {SHAPES}.")


def render_clip(spec: ClipSpec, num_frames: int = 16, height: int = 64, width: int | None = None) -> np.ndarray:
    """
    The frames of `spec`: `spec.count` objects in separate lanes, all moving from one edge to the opposite one in
    `spec.direction` (a one-frame clip shows the start).

    Args:
        num_frames: `T` (>= 1).
        height, width: frame size (`width` defaults to `height`). The lanes split the side across the motion in
            `MAX_OBJECTS`; each must hold at least 4 pixels.

    Returns:
        `np.ndarray` of dtype uint8 and shape `(T, height, width, 3)`, RGB.
    """
    width = height if width is None else width
    if num_frames < 1 or height < 1 or width < 1:
        raise ValueError(f"num_frames, height and width must be >= 1, got {num_frames}, {height}, {width}")
    horizontal = spec.direction in ("left", "right")
    across, along_side = (height, width) if horizontal else (width, height)
    lane = across // MAX_OBJECTS
    if lane < 4:
        raise ValueError(
            f"frames of {height}x{width} are too small: each of the {MAX_OBJECTS} lanes across the "
            f"motion needs at least 4 pixels"
        )
    rng = np.random.default_rng(spec.seed)
    side = min(int(rng.integers(max(3, lane * 5 // 8), max(4, lane * 7 // 8) + 1)), along_side)
    mask = shape_mask(spec.shape, side)
    if isinstance(spec.colour, str):
        colour = np.asarray(COLOURS[spec.colour], dtype=np.int16) + rng.integers(-15, 16, size=3)
        colour = np.clip(colour, 0, 255).astype(np.uint8)
    else:
        colour = np.asarray(spec.colour, dtype=np.uint8)
    background = rng.integers(0, 60, size=3).astype(np.uint8)
    lanes = sorted(rng.choice(MAX_OBJECTS, size=spec.count, replace=False).tolist())
    offsets = [lane_index * lane + int(rng.integers(0, lane - side + 1)) for lane_index in lanes]
    # each object starts at its own phase so that objects do not line up perfectly
    starts = rng.uniform(0.0, 0.25, size=spec.count)
    travel = along_side - side
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    frames[...] = background
    for t in range(num_frames):
        progress = t / (num_frames - 1) if num_frames > 1 else 0.0
        for offset, start in zip(offsets, starts):
            along = int(round((start + (1.0 - start) * progress) * travel * 0.999))
            if spec.direction in ("left", "up"):
                along = travel - along
            top, left = (offset, along) if horizontal else (along, offset)
            region = frames[t, top : top + side, left : left + side]
            region[mask] = colour
    return frames


def _encoder_available(codec: str) -> bool:
    try:
        av.Codec(codec, "w")
    except (av.error.FFmpegError, ValueError):
        return False
    return True


def _pick_codec(codec: str | None) -> tuple[str, str]:
    """Return `(codec_name, pix_fmt)` for `codec` or the first available default."""
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
    raise RuntimeError(f"none of the encoders {[name for name, _ in _DEFAULT_CODECS]} is available in this PyAV build")


def write_clip(
    path: str | Path,
    frames: np.ndarray | Sequence[np.ndarray],
    fps: int = 8,
    codec: str | None = None,
) -> Path:
    """Encode RGB frames to a video file with PyAV.

    Args:
        path: output file; the container format follows the suffix (`.mp4` is usual).
        frames: `uint8` array `[T, H, W, 3]` (or a sequence of `[H, W, 3]` arrays).
        fps: constant frame rate written to the stream (integer frames per second).
        codec: encoder name (e.g. `"libx264"`, `"mpeg4"`, `"mjpeg"`); `None` picks
            the first available of libx264, mpeg4, mjpeg.

    The chosen pixel format subsamples chroma 2x2 (`yuv420p`/`yuvj420p`), which needs
    even frame sizes; odd heights/widths are padded by one row/column that repeats the
    last one, so the decoded clip may be one pixel taller/wider than `frames`.

    Returns:
        `Path` of the written file.
    """
    array = np.asarray(frames)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3 or array.shape[0] < 1:
        raise ValueError(
            f"frames must be a non-empty uint8 array [T, H, W, 3], got dtype {array.dtype} and shape {array.shape}"
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
            array.shape[2],
            array.shape[1],
            array.shape[2] + pad_w,
            array.shape[1] + pad_h,
            pix_fmt,
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


def random_spec(rng: np.random.Generator) -> ClipSpec:
    """A clip of random colour, shape, direction, object count and seed, drawn from `rng` (the synthetic training set,
    the synthetic camera and the synthetic lmms-eval task draw their clips with it)."""
    return ClipSpec(
        colour=str(rng.choice(list(COLOURS))),
        shape=str(rng.choice(SHAPES)),
        direction=str(rng.choice(DIRECTIONS)),
        count=int(rng.integers(1, MAX_OBJECTS + 1)),
        seed=int(rng.integers(0, 2**31 - 1)),
    )


__all__ = [
    "COLOURS",
    "DIRECTIONS",
    "MAX_OBJECTS",
    "SHAPES",
    "ClipSpec",
    "random_spec",
    "render_clip",
    "shape_mask",
    "write_clip",
]
