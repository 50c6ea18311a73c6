"""
Pictures of what VQToken does to a video: every patch of every sampled frame coloured by its cluster (the token-hash
index map, blended over the frame) and a bar chart of the cluster sizes.

Drawn with Pillow only (a runtime dependency), so `vqtoken visualize` needs nothing extra.
"""

import colorsys
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .files import write_atomically
from .modeling.configuration_vqtoken_llava_onevision import VQTokenSettingError
from .modeling.video_io import DecodedVideo
from .modeling.vqtoken_inference import video_pixels


logger = logging.getLogger(__name__)

PANEL = 224  # side of one frame panel, pixels
MARGIN = 16
LABEL = 18  # height of the caption above each panel
CHART = 180  # height of the cluster-size chart
COLUMNS = 4
OVERLAY_ALPHA = 0.45


@dataclass
class ClusterMap:
    """
    The clusters of one video.

    Attributes:
        frames: the sampled frames, `uint8 (T, H, W, 3)`.
        index_map: cluster id of every patch, `(T, grid, grid)`.
        num_clusters: `K`.
        cluster_sizes: tokens per cluster, `K` integers summing to `T * grid * grid`.
    """

    frames: np.ndarray
    index_map: np.ndarray
    num_clusters: int

    @property
    def cluster_sizes(self) -> list[int]:
        return np.bincount(self.index_map.reshape(-1), minlength=self.num_clusters).tolist()


@torch.no_grad()
def cluster_video(model, processor, video: DecodedVideo) -> ClusterMap:
    """Runs the vision tower, projector and clustering of `model` on one decoded video and returns its index map."""
    if model.config.vqtoken_mode == "off":
        raise VQTokenSettingError(
            "`vqtoken_mode` 'off' does not cluster: use 'centroids' or 'attention' to see the clusters."
        )
    frame_features = model.model.get_frame_features(video_pixels(model, processor, video.frames))
    outputs = model.model.quantize_frame_features(frame_features)
    index_map = outputs.index_maps[0].cpu().numpy()
    grid = math.isqrt(index_map.shape[1])
    if grid * grid != index_map.shape[1]:
        raise ValueError(f"Cannot lay {index_map.shape[1]} tokens per frame out on a square grid.")
    return ClusterMap(
        frames=video.frames, index_map=index_map.reshape(-1, grid, grid), num_clusters=int(outputs.num_clusters[0])
    )


def palette(num_colors: int) -> np.ndarray:
    """`num_colors` well separated RGB colours, `uint8 (num_colors, 3)` (hues spaced by the golden ratio)."""
    colors = []
    for index in range(num_colors):
        hue = (index * 0.618033988749895) % 1.0
        value = 1.0 if index % 2 == 0 else 0.8
        colors.append([round(255 * channel) for channel in colorsys.hsv_to_rgb(hue, 0.9, value)])
    return np.asarray(colors, dtype=np.uint8).reshape(-1, 3)


def layout(num_frames: int) -> tuple[tuple[int, int], list[tuple[int, int]]]:
    """The picture size `(width, height)` and the top-left corner of each frame panel (`PANEL` pixels square)."""
    columns = max(1, min(num_frames, COLUMNS))
    rows = math.ceil(num_frames / columns)
    width = columns * PANEL + (columns + 1) * MARGIN
    height = MARGIN + rows * (LABEL + PANEL + MARGIN) + CHART + MARGIN
    corners = [
        (MARGIN + (index % columns) * (PANEL + MARGIN), MARGIN + (index // columns) * (LABEL + PANEL + MARGIN) + LABEL)
        for index in range(num_frames)
    ]
    return (width, height), corners


def overlay_frame(frame: np.ndarray, index_map: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """One frame resized to `PANEL` pixels, each patch blended with its cluster's colour: `uint8 (PANEL, PANEL, 3)`."""
    grid = index_map.shape[0]
    picture = np.asarray(Image.fromarray(frame).resize((PANEL, PANEL), Image.BILINEAR), dtype=np.float32)
    cells = (np.arange(PANEL) * grid) // PANEL  # the patch of every pixel row / column
    tint = colors[index_map[cells[:, None], cells[None, :]]].astype(np.float32)
    return np.rint((1 - OVERLAY_ALPHA) * picture + OVERLAY_ALPHA * tint).astype(np.uint8)


def draw_clusters(clusters: ClusterMap, title: str = "") -> Image.Image:
    """The picture: frame panels with their patch clusters, and the size of every cluster as a bar chart."""
    num_frames = clusters.frames.shape[0]
    (width, height), corners = layout(num_frames)
    colors = palette(clusters.num_clusters)
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    for index, (left, top) in enumerate(corners):
        image.paste(
            Image.fromarray(overlay_frame(clusters.frames[index], clusters.index_map[index], colors)), (left, top)
        )
        draw.text((left, top - LABEL + 3), f"frame {index}", fill=(0, 0, 0), font=font)

    sizes = clusters.cluster_sizes
    chart_top = height - MARGIN - CHART
    caption = f"{title}  K = {clusters.num_clusters} clusters, tokens per cluster (max {max(sizes)})".strip()
    draw.text((MARGIN, chart_top), caption, fill=(0, 0, 0), font=font)
    bars_top, bars_bottom = chart_top + LABEL, height - MARGIN
    draw.line([(MARGIN, bars_bottom), (width - MARGIN, bars_bottom)], fill=(0, 0, 0))
    slot = (width - 2 * MARGIN) / max(1, len(sizes))
    for cluster, size in enumerate(sizes):
        bar_height = round((bars_bottom - bars_top) * size / max(1, max(sizes)))
        left = MARGIN + cluster * slot
        draw.rectangle(
            [round(left + 0.1 * slot), bars_bottom - bar_height, round(left + 0.9 * slot), bars_bottom],
            fill=tuple(int(channel) for channel in colors[cluster]),
        )
    return image


def save_atomically(image: Image.Image, path: str | os.PathLike) -> Path:
    """Writes `image` as PNG to a temporary file next to `path`, then renames it: `path` is never half written."""
    path = write_atomically(path, lambda stream: image.save(stream, format="PNG"))
    logger.info("wrote %s (%dx%d)", path, *image.size)
    return path


__all__ = ["ClusterMap", "cluster_video", "draw_clusters", "layout", "overlay_frame", "palette", "save_atomically"]
