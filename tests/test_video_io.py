"""Tests for vqtoken.video_io (load_video) and vqtoken.synthetic (clip generation)."""

from __future__ import annotations

import io
import os
import threading
import warnings

import av
import numpy as np
import pytest
from video_fixtures import (
    encoder_available,
    index_colors,
    recover_indices,
    truncate_copy,
    write_audio_only,
    write_test_video,
    write_video_with_longer_audio,
)

from vqtoken.modeling import video_io
from vqtoken.synthetic import ClipSpec, render_clip, write_clip
from vqtoken.video_io import DecodedVideo, VideoDecodeError, load_video, uniform_indices


def expected_uniform(total: int, n: int) -> list[int]:
    """Hand computation of the VQToken uniform indices."""
    return [int(round(x)) for x in np.linspace(0, total - 1, n)]


CODECS = [
    ("mpeg4", "yuv420p", "mp4"),
    ("libx264", "yuv420p", "mp4"),
    ("mjpeg", "yuvj420p", "avi"),
    ("libvpx-vp9", "yuv420p", "webm"),
    ("ffv1", "yuv420p", "mkv"),
]


@pytest.fixture(scope="module")
def indexed_mp4(tmp_path_factory):
    """50 frames at 10 fps, 32x48, frame i a solid palette colour."""
    path = tmp_path_factory.mktemp("clips") / "indexed.mp4"
    return write_test_video(path, index_colors(50, 32, 48), fps=10, codec="mpeg4")


# ---------------------------------------------------------------- uniform sampling


@pytest.mark.parametrize("codec,pix_fmt,ext", CODECS, ids=[c[0] for c in CODECS])
def test_uniform_sampling_recovers_expected_frames(tmp_path, codec, pix_fmt, ext):
    if not encoder_available(codec):
        pytest.skip(f"encoder {codec} not in this PyAV build")
    path = write_test_video(tmp_path / f"clip.{ext}", index_colors(50, 32, 48), 10, codec, pix_fmt)
    video = load_video(path, num_frames=8)

    expected = expected_uniform(50, 8)
    assert expected == [0, 7, 14, 21, 28, 35, 42, 49]
    assert isinstance(video, DecodedVideo)
    assert video.frames.shape == (8, 32, 48, 3) and video.frames.dtype == np.uint8
    assert recover_indices(video.frames, 50) == expected
    assert video.indices == expected
    assert video.timestamps == pytest.approx([i / 10 for i in expected], abs=1e-6)
    assert video.fps == pytest.approx(10.0)
    assert video.duration == pytest.approx(5.0)
    assert video.num_source_frames == 50
    assert video.source == str(path)


def test_default_is_32_frames(indexed_mp4):
    video = load_video(indexed_mp4)
    assert video.frames.shape[0] == video_io.DEFAULT_NUM_FRAMES == 32
    assert recover_indices(video.frames, 50) == expected_uniform(50, 32)


def test_short_clip_repeats_frames(tmp_path):
    path = write_test_video(tmp_path / "short.mp4", index_colors(5, 16, 16), fps=10)
    video = load_video(path, num_frames=8)
    assert video.indices == expected_uniform(5, 8) == [0, 1, 1, 2, 2, 3, 3, 4]
    assert recover_indices(video.frames, 5) == video.indices


def test_single_frame_video(tmp_path):
    path = write_test_video(tmp_path / "one.mp4", index_colors(1, 16, 16), fps=5)
    video = load_video(path, num_frames=3)
    assert video.indices == [0, 0, 0] and video.timestamps == [0.0, 0.0, 0.0]
    assert video.duration == pytest.approx(0.2)
    assert load_video(path, fps=1).indices == [0]


def test_uniform_indices_helper():
    assert uniform_indices(1, 4) == [0, 0, 0, 0]
    assert uniform_indices(100, 1) == [0]
    assert uniform_indices(2000, 32) == expected_uniform(2000, 32)
    with pytest.raises(ValueError):
        uniform_indices(0, 4)


# ---------------------------------------------------------------- fps sampling


def test_fps_sampling(indexed_mp4):
    video = load_video(indexed_mp4, fps=2)  # 5 s clip -> targets 0, 0.5, ..., 4.5 s
    assert video.indices == list(range(0, 50, 5))
    assert recover_indices(video.frames, 50) == video.indices
    assert video.timestamps == pytest.approx([i * 0.5 for i in range(10)], abs=1e-6)


def test_fps_above_source_rate_returns_each_frame_once(tmp_path):
    path = write_test_video(tmp_path / "c.mp4", index_colors(6, 16, 16), fps=4)
    video = load_video(path, fps=30)
    assert video.indices == list(range(6))
    assert recover_indices(video.frames, 6) == list(range(6))


def test_variable_frame_rate_uses_presentation_timestamps(tmp_path):
    times = [0.0, 0.1, 0.15, 0.5, 0.55, 1.2, 1.25, 2.0]
    path = write_test_video(tmp_path / "vfr.mp4", index_colors(8, 16, 32), fps=10, pts_seconds=times)

    video = load_video(path, num_frames=8)
    assert video.timestamps == pytest.approx(times, abs=1e-3)
    assert recover_indices(video.frames, 8) == list(range(8))

    # Frame on screen at 0, 0.5, 1.0, 1.5, 2.0 s (not index * nominal rate).
    video = load_video(path, fps=2)
    assert video.indices == [0, 3, 4, 6, 7]
    assert recover_indices(video.frames, 8) == [0, 3, 4, 6, 7]
    assert video.timestamps == pytest.approx([0.0, 0.5, 0.55, 1.25, 2.0], abs=1e-3)


# ---------------------------------------------------------------- pixel formats, sizes, rotation


def test_odd_frame_size(tmp_path):
    path = write_test_video(tmp_path / "odd.mp4", index_colors(12, 17, 33), fps=10, codec="mpeg4")
    video = load_video(path, num_frames=4)
    assert video.frames.shape == (4, 17, 33, 3)
    assert recover_indices(video.frames, 12) == expected_uniform(12, 4)


def test_grayscale_source(tmp_path):
    gray_levels = np.array([0, 60, 120, 180, 240], dtype=np.uint8)
    frames = np.repeat(np.broadcast_to(gray_levels[:, None, None, None], (5, 16, 24, 1)), 3, axis=-1)
    path = write_test_video(tmp_path / "gray.mkv", frames, fps=5, codec="ffv1", pix_fmt="gray")
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.pix_fmt == "gray"

    video = load_video(path, num_frames=5)
    assert video.frames.shape == (5, 16, 24, 3)
    assert np.array_equal(video.frames[..., 0], video.frames[..., 2])
    means = video.frames.reshape(5, -1).mean(axis=1)
    assert means == pytest.approx(gray_levels.astype(float), abs=3)


def _marked_frames(num_frames: int = 4) -> np.ndarray:
    """Landscape 16x32 frames, black with a red 8x8 block in the top-left corner."""
    frames = np.zeros((num_frames, 16, 32, 3), dtype=np.uint8)
    frames[:, :8, :8, 0] = 255
    return frames


def _red_corner(frame: np.ndarray) -> str:
    h, w = frame.shape[:2]
    corners = {
        "top-left": frame[: h // 4, : w // 4],
        "top-right": frame[: h // 4, -w // 4 :],
        "bottom-left": frame[-h // 4 :, : w // 4],
        "bottom-right": frame[-h // 4 :, -w // 4 :],
    }
    return max(corners, key=lambda name: corners[name][..., 0].mean())


@pytest.mark.parametrize(
    "rotation,shape,corner",
    [
        (0, (16, 32), "top-left"),
        (-90, (32, 16), "top-right"),  # phone portrait: rotate clockwise to display
        (90, (32, 16), "bottom-left"),
        (180, (16, 32), "bottom-right"),
    ],
)
def test_rotation_display_matrix(tmp_path, rotation, shape, corner):
    path = write_test_video(tmp_path / "rot.mp4", _marked_frames(), fps=4, rotation=rotation)
    video = load_video(path, num_frames=2)
    assert video.frames.shape == (2, *shape, 3)
    assert _red_corner(video.frames[0]) == corner


# ---------------------------------------------------------------- input kinds


def test_file_object_input(indexed_mp4):
    from_path = load_video(indexed_mp4, num_frames=6)
    with open(indexed_mp4, "rb") as handle:
        from_handle = load_video(handle, num_frames=6)
    assert from_handle.source == str(indexed_mp4)
    assert from_handle.indices == from_path.indices
    assert np.array_equal(from_handle.frames, from_path.frames)

    from_bytes = load_video(io.BytesIO(indexed_mp4.read_bytes()), num_frames=6)
    assert from_bytes.source == "<BytesIO object>"
    assert np.array_equal(from_bytes.frames, from_path.frames)


def test_non_seekable_file_object(indexed_mp4):
    class Pipe(io.RawIOBase):
        def __init__(self, data: bytes):
            self._inner = io.BytesIO(data)

        def readable(self):
            return True

        def seekable(self):
            return False

        def readinto(self, buffer):
            return self._inner.readinto(buffer)

    video = load_video(Pipe(indexed_mp4.read_bytes()), num_frames=4)
    assert recover_indices(video.frames, 50) == expected_uniform(50, 4)


def test_rgb_array_input():
    frames = index_colors(20, 8, 12)
    video = load_video(frames, num_frames=5)
    assert video.indices == expected_uniform(20, 5)
    assert np.array_equal(video.frames, frames[video.indices])
    assert video.fps is None and video.duration == 20 and video.num_source_frames == 20
    assert video.timestamps == [float(i) for i in video.indices]
    assert "array of 20 frames" in video.source

    video = load_video(frames, fps=2, source_fps=10)  # every 5th frame
    assert video.indices == [0, 5, 10, 15]
    assert video.timestamps == pytest.approx([0.0, 0.5, 1.0, 1.5])
    assert video.fps == 10 and video.duration == pytest.approx(2.0)


def test_list_grayscale_and_rgba_arrays():
    rgb = index_colors(6, 4, 5)
    listed = load_video(list(rgb), num_frames=3)
    assert np.array_equal(listed.frames, rgb[[0, 2, 5]])

    gray = rgb[..., 1]  # [T, H, W]
    video = load_video(gray, num_frames=3)
    assert video.frames.shape == (3, 4, 5, 3)
    assert np.array_equal(video.frames, np.repeat(gray[[0, 2, 5], ..., None], 3, axis=-1))
    assert np.array_equal(load_video(gray[..., None], num_frames=3).frames, video.frames)

    rgba = np.concatenate([rgb, np.full((6, 4, 5, 1), 7, np.uint8)], axis=-1)
    assert np.array_equal(load_video(rgba, num_frames=3).frames, rgb[[0, 2, 5]])


@pytest.mark.parametrize(
    "frames,message",
    [
        (np.zeros((4, 8, 8, 3), np.float32), "uint8"),
        (np.zeros((4, 8, 8, 2), np.uint8), "shape"),
        (np.zeros((0, 8, 8, 3), np.uint8), "empty"),
        ([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8)], "same shape"),
    ],
)
def test_bad_arrays(frames, message):
    with pytest.raises(ValueError, match=message):
        load_video(frames, num_frames=2)


def test_sampling_policy_errors(indexed_mp4):
    with pytest.raises(ValueError, match="either num_frames .* or fps"):
        load_video(indexed_mp4, num_frames=8, fps=1)
    with pytest.raises(ValueError, match="num_frames must be a positive integer"):
        load_video(indexed_mp4, num_frames=0)
    with pytest.raises(ValueError, match="fps must be a positive"):
        load_video(indexed_mp4, fps=0)
    with pytest.raises(ValueError, match="needs source_fps"):
        load_video(index_colors(4, 2, 2), fps=1)
    with pytest.raises(ValueError, match="arrays only"):
        load_video(indexed_mp4, source_fps=30)


def test_longer_audio_track_is_not_mistaken_for_missing_video(tmp_path):
    path = write_video_with_longer_audio(tmp_path / "av.mkv", index_colors(10, 16, 16), fps=10, audio_seconds=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        video = load_video(path, num_frames=4)
    assert video.indices == [0, 3, 6, 9]
    assert recover_indices(video.frames, 10) == [0, 3, 6, 9]
    assert video.num_source_frames == 10
    assert video.duration == pytest.approx(1.0)


# ---------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        load_video(missing)


def test_text_file_named_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 20)
    with pytest.raises(VideoDecodeError, match=r"notes\.mp4 is not a readable video file"):
        load_video(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(VideoDecodeError, match=r"empty\.mp4"):
        load_video(path)


@pytest.mark.parametrize("codec,ext", [("mp2", "mka"), ("aac", "m4a"), ("pcm_s16le", "wav")])
def test_audio_only_file(tmp_path, codec, ext):
    if not encoder_available(codec):
        pytest.skip(f"encoder {codec} not in this PyAV build")
    path = write_audio_only(tmp_path / f"tone.{ext}", codec=codec)
    with pytest.raises(VideoDecodeError, match=rf"tone\.{ext} has no video stream \(streams: audio\)"):
        load_video(path)


def test_no_decodable_frame(tmp_path):
    path = write_test_video(tmp_path / "full.mkv", index_colors(10, 16, 16), fps=10)
    with av.open(str(path)) as container:
        first_packet_pos = next(p.pos for p in container.demux(video=0) if p.size)
    cut = truncate_copy(path, tmp_path / "headeronly.mkv", first_packet_pos / path.stat().st_size)
    with pytest.raises(VideoDecodeError, match=r"headeronly\.mkv has no decodable video frame"):
        load_video(cut)


def test_truncated_mp4_without_index(tmp_path, indexed_mp4):
    cut = truncate_copy(indexed_mp4, tmp_path / "cut.mp4", 0.6)  # moov atom is at the end
    with pytest.raises(
        VideoDecodeError, match=r"cut\.mp4 is not a readable video file: it is truncated, an MP4/MOV file"
    ):
        load_video(cut)


@pytest.fixture(scope="module")
def truncated_mkv(tmp_path_factory):
    folder = tmp_path_factory.mktemp("trunc")
    full = write_test_video(
        folder / "full.mkv", index_colors(60, 32, 32), fps=10, codec="mjpeg", pix_fmt="yuvj420p"
    )  # intra-only: bytes grow evenly per frame
    return truncate_copy(full, folder / "cut.mkv", 0.6)


def test_truncated_stream_returns_frames_before_break(truncated_mkv):
    with pytest.warns(RuntimeWarning, match=r"cut\.mkv: video stream breaks part-way") as record:
        video = load_video(truncated_mkv, num_frames=10)
    message = str(record[0].message)
    recovered = video.frames.shape[0]
    assert 3 <= recovered < 10
    assert f"recovered {recovered} of 10 sampled frames" in message
    expected = expected_uniform(60, 10)[:recovered]  # sampled over the declared whole clip
    assert video.indices == expected
    assert recover_indices(video.frames, 60) == expected
    assert video.num_source_frames == 60
    assert video.duration == pytest.approx(6.0, abs=0.15)


def test_truncated_stream_below_minimum_raises(truncated_mkv):
    with pytest.raises(VideoDecodeError, match=r"cut\.mkv: .*recovered \d+ of 10 .*minimum of 10"):
        load_video(truncated_mkv, num_frames=10, min_frames=10)


# ---------------------------------------------------------------- long clip, bounded memory


def test_long_clip_keeps_only_sampled_frames(tmp_path, monkeypatch):
    frames = np.zeros((2000, 16, 16, 3), dtype=np.uint8)
    frames[:, :, :, 0] = (np.arange(2000) % 256)[:, None, None]
    path = write_test_video(tmp_path / "long.mkv", frames, fps=25, codec="mpeg4")

    conversions = []
    real_to_rgb = video_io._to_rgb

    def counting_to_rgb(frame, stream, size):
        conversions.append(frame.pts)
        return real_to_rgb(frame, stream, size)

    monkeypatch.setattr(video_io, "_to_rgb", counting_to_rgb)
    video = load_video(path, num_frames=16)
    assert video.frames.shape == (16, 16, 16, 3)
    assert video.frames.nbytes == 16 * 16 * 16 * 3
    assert len(conversions) == 16  # only sampled frames are converted to RGB
    assert video.num_source_frames == 2000
    assert video.indices == expected_uniform(2000, 16)
    assert video.duration == pytest.approx(80.0)


# ---------------------------------------------------------------- several videos at once


def test_decode_videos_decodes_each_video_as_load_video_does(tmp_path):
    from vqtoken.modeling.vqtoken_inference import decode_videos

    paths = [
        write_test_video(tmp_path / f"clip{length}.mp4", index_colors(length, 16, 24), 10, "mpeg4")
        for length in (9, 30, 17, 50, 4)
    ]
    arrays = index_colors(12, 16, 24)
    decoded = decode_videos([*paths, arrays], num_frames=6)

    assert [video.source for video in decoded[:5]] == [str(path) for path in paths]
    for video, source in zip(decoded, [*paths, arrays]):
        alone = load_video(source, num_frames=6)
        assert video.indices == alone.indices
        np.testing.assert_array_equal(video.frames, alone.frames)


def test_decode_videos_decodes_a_repeated_video_once(tmp_path, monkeypatch):
    from vqtoken.modeling import vqtoken_inference

    path = write_test_video(tmp_path / "clip.mp4", index_colors(20, 16, 24), 10, "mpeg4")
    other = write_test_video(tmp_path / "other.mp4", index_colors(12, 16, 24), 10, "mpeg4")
    alone = load_video(path, num_frames=5)
    decoded_sources = []

    def counting_load_video(source, num_frames):
        decoded_sources.append(source)
        return load_video(source, num_frames=num_frames)

    monkeypatch.setattr(vqtoken_inference, "load_video", counting_load_video)
    with open(path, "rb") as file:
        # the same file object twice: read by one thread once, not by two at once from a shared position
        decoded = vqtoken_inference.decode_videos(
            [path, str(path), file, other, tmp_path / "." / "clip.mp4", file], num_frames=5
        )

    assert len(decoded_sources) == 3  # the path (three spellings), the file object, the other clip
    for index in (0, 1, 2, 4, 5):
        np.testing.assert_array_equal(decoded[index].frames, alone.frames)
    assert decoded[3].num_source_frames == 12


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores to decode two videos at once")
def test_decode_concurrently_runs_items_side_by_side_and_keeps_their_order():
    both_started = threading.Barrier(2, timeout=10)

    def decode(item: int) -> int:
        if item < 2:  # one after the other, the first would wait for the second until the barrier breaks
            both_started.wait()
        return item * 10

    assert video_io.decode_concurrently(decode, [0, 1, 2, 3, 4]) == [0, 10, 20, 30, 40]


def test_decode_concurrently_raises_the_first_error_in_order():
    finished = []
    third_failed = threading.Event()

    def decode(item: int) -> int:
        if item == 3:
            third_failed.set()
            raise VideoDecodeError("video 3 is broken")
        if item == 1:  # fails after item 3 has, yet comes first
            third_failed.wait(timeout=10)
            raise VideoDecodeError("video 1 is broken")
        finished.append(item)
        return item

    with pytest.raises(VideoDecodeError, match="video 1 is broken"):
        video_io.decode_concurrently(decode, [0, 1, 2, 3, 4])
    assert 0 in finished


# ---------------------------------------------------------------- synthetic clips


def test_synthetic_clip_is_deterministic_and_moves():
    clip = render_clip(ClipSpec((0, 255, 0), direction="right", seed=5), 8, 24, 40)
    assert clip.shape == (8, 24, 40, 3) and clip.dtype == np.uint8
    assert np.array_equal(clip, render_clip(ClipSpec((0, 255, 0), "square", "right", seed=5), 8, 24, 40))
    assert not np.array_equal(clip, render_clip(ClipSpec((0, 255, 0), "square", "right", seed=6), 8, 24, 40))

    def centre(frame):
        ys, xs = np.nonzero((frame == (0, 255, 0)).all(axis=-1))
        return ys.mean(), xs.mean()

    centres = [centre(f) for f in clip]
    xs = [c[1] for c in centres]
    assert xs == sorted(xs) and xs[-1] > xs[0]
    assert len({round(c[0], 3) for c in centres}) == 1
    for direction, axis, sign in [("left", 1, -1), ("down", 0, 1), ("up", 0, -1)]:
        moved = render_clip(ClipSpec((0, 255, 0), "square", direction, seed=1), 6, 30, 30)
        start, end = centre(moved[0])[axis], centre(moved[-1])[axis]
        assert sign * (end - start) > 0
    with pytest.raises(ValueError, match="direction"):
        render_clip(ClipSpec((255, 0, 0), direction="diagonal"), 4, 8, 8)


def test_write_clip_round_trip(tmp_path):
    clip = render_clip(ClipSpec((255, 255, 0), seed=2), 12, 32, 48)
    path = write_clip(tmp_path / "square.mp4", clip, fps=8)
    video = load_video(path, num_frames=12)
    assert video.frames.shape == (12, 32, 48, 3)
    assert video.fps == pytest.approx(8.0)
    assert np.abs(video.frames.astype(int) - clip.astype(int)).mean() < 8


def test_write_clip_pads_odd_sizes(tmp_path):
    clip = render_clip(ClipSpec((255, 0, 0), seed=0), 4, 17, 33)
    path = write_clip(tmp_path / "odd.mp4", clip, fps=8, codec="mpeg4")
    video = load_video(path, num_frames=4)
    assert video.frames.shape == (4, 18, 34, 3)
    with pytest.raises(ValueError, match="not available"):
        write_clip(tmp_path / "x.mp4", clip, codec="no-such-codec")
