"""
A synthetic "camera": the frames of an arbitrarily long video, made scene after scene as they are asked for.

Each scene is a clip of the synthetic training set (`vqtoken.training.synthetic_data`: coloured shapes sliding over
a dark background) with its own random colour, shape, direction and count; scenes follow one another without a
transition. Nothing is kept between windows, so an hour costs the memory of one window. Used by the streaming
example, the streaming benchmark and the tests.
"""

from collections.abc import Iterator

import numpy as np

from .synthetic import random_spec, render_clip


def scene_specs(num_scenes: int, seed: int = 0) -> list:
    """The [`ClipSpec`] of each scene, drawn from `numpy.random.default_rng(seed)`."""
    rng = np.random.default_rng(seed)
    return [random_spec(rng) for _ in range(num_scenes)]


def camera_frames(
    num_frames: int, window: int = 32, scene_frames: int = 60, size: int = 64, seed: int = 0
) -> Iterator[np.ndarray]:
    """
    Yields the frames of a `num_frames`-frame synthetic video, `window` at a time (the last window may be shorter).

    Args:
        num_frames: frames in all.
        window: frames per yielded array.
        scene_frames: frames per scene (at 1 frame/s, 60 is a scene a minute).
        size: frame side in pixels.
        seed: seed of the scenes.

    Yields:
        `uint8` arrays `(n, size, size, 3)`, `n <= window`.
    """
    specs = scene_specs(-(-num_frames // scene_frames), seed)
    scene, clip = -1, None
    for start in range(0, num_frames, window):
        frames = []
        for frame in range(start, min(start + window, num_frames)):
            if frame // scene_frames != scene:
                scene = frame // scene_frames
                clip = render_clip(specs[scene], num_frames=scene_frames, height=size)
            frames.append(clip[frame % scene_frames])
        yield np.stack(frames)


__all__ = ["camera_frames", "scene_specs"]
