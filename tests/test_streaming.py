"""
Streaming (`vqtoken.streaming`, `vqtoken.incremental_codebook`, `read_windows`): one chunk is the offline clustering,
more chunks stay within 5 % of offline K-means, asking changes nothing, `.vqt` save / resume / refusal, bad input.
"""

import json
import math
import shutil

import av
import numpy as np
import pytest
import torch
from helpers import random_clip
from video_fixtures import index_colors, write_test_video

from vqtoken.cache import CacheFormatError, CacheMismatchError, ask_cached, encode_to_vqt, read_cached_video
from vqtoken.commands import main as vqtoken_main
from vqtoken.incremental_codebook import (
    CodebookSettings,
    IncrementalCodebook,
    cosine_distortion,
    groups_after_merges,
    select_codebook,
    ward_merges,
)
from vqtoken.inference import ask_video, ask_videos
from vqtoken.modeling.vqtoken_kmeans import (
    number_clusters_by_first_appearance,
    partition_distortion,
    quantize_video_tokens,
    ward_merge_tree,
)
from vqtoken.streaming import StreamError, VideoStream, encode_stream
from vqtoken.synthetic_camera import camera_frames
from vqtoken.video_io import FRAME_LAYOUT, load_video, read_windows, uniform_indices


QUESTION = "what colour is the square ?"


def partition_sums(tokens: torch.Tensor, labels: torch.Tensor, num_clusters: int):
    """fp64 reference: sums `(num_clusters, dim)` and counts of the unit-normalised `tokens` of each cluster."""
    unit = torch.nn.functional.normalize(tokens.double(), dim=-1)
    sums = torch.zeros(num_clusters, tokens.shape[1], dtype=torch.float64).index_add_(0, labels, unit)
    return sums, torch.bincount(labels, minlength=num_clusters).double()


def _state(stream: VideoStream) -> dict:
    """Every tensor of a stream's state, and its frame bookkeeping."""
    tensors = {name: tensor.clone() for name, tensor in stream.codebook.state_tensors().items()}
    return {
        **tensors,
        "frame_times": list(stream.frame_times),
        "frame_size": stream.frame_size,
        "chunks": stream.codebook.num_chunks,
        "fingerprint": stream.source_fingerprint,
        "closed": stream.closed,
    }


def _assert_same_state(first: dict, second: dict):
    assert first.keys() == second.keys()
    for name in first:
        if isinstance(first[name], torch.Tensor):
            assert torch.equal(first[name], second[name]), name
        else:
            assert first[name] == second[name] or (
                name == "frame_times"
                and all(a == b or (math.isnan(a) and math.isnan(b)) for a, b in zip(first[name], second[name]))
            ), name


@pytest.fixture(scope="module")
def camera_features():
    """Projected tokens `(T, 64, 128)` of 192 frames of the synthetic camera (6 scenes), by the built-in default."""
    from vqtoken.loading import load_model_and_processor

    model, processor = load_model_and_processor(None)
    features = []
    for frames in camera_frames(192, window=64, scene_frames=30, seed=0):
        pixel_values = processor.video_processor(videos=[frames], return_tensors="pt", input_data_format=FRAME_LAYOUT)[
            "pixel_values_videos"
        ]
        with torch.no_grad():
            features.append(model.model.get_frame_features(pixel_values)[0])
    return torch.cat(features), CodebookSettings.from_config(model.config)


# ---------------------------------------------------------------------------------------------------------------------
# Where the stream meets the offline path
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [
        {"vqtoken_mode": "attention", "vqtoken_max_clusters": 5},
        {"vqtoken_mode": "centroids", "vqtoken_max_clusters": 6},
        {
            "vqtoken_mode": "centroids",
            "vqtoken_selection_method": "elbow",
            "vqtoken_min_clusters": 3,
            "vqtoken_max_clusters": 9,
        },
    ],
)
def test_one_chunk_is_the_offline_codebook_and_answer(build_model, settings):
    model, processor = build_model(**settings)
    clip = random_clip(3, num_frames=6)
    stream = VideoStream(model, processor, attention_frames=6)
    stream.add_frames(clip)

    pixel_values = processor.video_processor(videos=[clip], return_tensors="pt")["pixel_values_videos"]
    offline = model.encode_videos(pixel_values)
    assert torch.equal(stream.snapshot().codebook, offline.codebooks[0])
    assert torch.equal(stream.index_map(), offline.index_maps[0])

    streamed = stream.ask(QUESTION, max_new_tokens=3, min_new_tokens=3)
    fresh = ask_video(model, processor, clip, QUESTION, num_frames=6, max_new_tokens=3, min_new_tokens=3)
    assert (
        streamed.answer,
        streamed.num_clusters,
        streamed.visual_tokens,
        streamed.num_frames,
        streamed.visual_tokens_clustered,
        streamed.visual_tokens_stock,
    ) == (
        fresh.answer,
        fresh.num_clusters,
        fresh.visual_tokens,
        fresh.num_frames,
        fresh.visual_tokens_clustered,
        fresh.visual_tokens_stock,
    )


@pytest.mark.parametrize("chunk_frames", [1, 4, 16, 64])
def test_more_chunks_stay_within_5_percent_of_offline_kmeans(camera_features, chunk_frames):
    features, settings = camera_features
    tokens = features.reshape(-1, features.shape[-1])
    offline = quantize_video_tokens(
        tokens[None], max_clusters=settings.max_clusters, seed=settings.seed, backend="torch"
    )
    offline_distortion = cosine_distortion(*partition_sums(tokens, offline.index_maps[0], settings.max_clusters))

    codebook = IncrementalCodebook(settings)
    for start in range(0, features.shape[0], chunk_frames):
        codebook.fold(features[start : start + chunk_frames])
    labels = codebook.index_map().reshape(-1)
    assert codebook.num_clusters == settings.max_clusters
    sums, counts = partition_sums(tokens, labels, codebook.num_clusters)
    # the codebook is the mean of its clusters' unit tokens (fp64 reference)
    torch.testing.assert_close(codebook.codebook.double(), sums / counts[:, None], rtol=0, atol=1e-5)
    assert cosine_distortion(sums, counts) <= 1.05 * offline_distortion


def test_cosine_distortion_is_the_mean_cosine_distance_to_the_cluster_direction():
    tokens = torch.randn(500, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 7, (500,), generator=torch.Generator().manual_seed(1))
    unit = torch.nn.functional.normalize(tokens, dim=-1)
    directions = torch.stack([torch.nn.functional.normalize(unit[labels == k].mean(0), dim=0) for k in range(7)])
    expected = float((1 - (unit * directions[labels]).sum(-1)).mean())
    assert cosine_distortion(*partition_sums(tokens, labels, 7)) == pytest.approx(expected, abs=1e-12)


def test_ward_merges_are_the_offline_merge_tree():
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randn(3000, 16, generator=generator)
    sums, counts = partition_sums(tokens, torch.randint(0, 40, (3000,), generator=generator), 40)
    merges, costs = ward_merges(sums, counts, 5)
    groups, distortions = ward_merge_tree(sums, counts, 5)
    for step in range(36):
        assert torch.equal(groups_after_merges(40, merges[:step]), groups[step])
    cumulative = partition_distortion(sums, counts) + torch.cat([costs.new_zeros(1), costs.cumsum(0)])
    torch.testing.assert_close(cumulative, distortions)


def test_visible_clusters_are_numbered_by_first_appearance(camera_features):
    features, settings = camera_features
    codebook = IncrementalCodebook(settings)
    for start in range(0, 96, 8):
        codebook.fold(features[start : start + 8])
    index_map = codebook.index_map().reshape(1, -1)
    renumbered_codebook, renumbered = number_clusters_by_first_appearance(codebook.codebook[None], index_map)
    assert torch.equal(renumbered, index_map) and torch.equal(renumbered_codebook[0], codebook.codebook)
    codebook_again, cluster_of_micro = select_codebook(
        codebook.sums, codebook.counts.double(), codebook.first_positions, settings
    )
    assert torch.equal(codebook_again, codebook.codebook) and torch.equal(cluster_of_micro, codebook.cluster_of_micro)


def test_same_chunks_give_the_same_codebook(camera_features):
    features, settings = camera_features
    runs = []
    for _ in range(2):
        codebook = IncrementalCodebook(settings)
        for start in range(0, 96, 12):
            codebook.fold(features[start : start + 12].clone())
        runs.append(codebook)
    assert torch.equal(runs[0].codebook, runs[1].codebook)
    assert torch.equal(runs[0].index_map(), runs[1].index_map())
    assert runs[0].micro_index_map.dtype == torch.int16


# ---------------------------------------------------------------------------------------------------------------------
# Asking
# ---------------------------------------------------------------------------------------------------------------------


def test_asking_does_not_disturb_the_stream(build_model):
    model, processor = build_model(vqtoken_mode="attention", vqtoken_max_clusters=5)
    asked, quiet = VideoStream(model, processor, attention_frames=4), VideoStream(model, processor, attention_frames=4)
    for seed in range(3):
        clip = random_clip(seed, num_frames=3)
        asked.add_frames(clip)
        quiet.add_frames(clip)
        before = _state(asked)
        first = asked.ask(QUESTION, max_new_tokens=3, min_new_tokens=3)
        second = asked.ask(QUESTION, max_new_tokens=3, min_new_tokens=3)
        _assert_same_state(before, _state(asked))
        assert first.answer == second.answer and first.visual_tokens == second.visual_tokens
    _assert_same_state(_state(asked), _state(quiet))


def test_attention_reads_rows_spread_uniformly_over_the_frames_seen(build_model):
    model, processor = build_model(vqtoken_mode="attention", vqtoken_max_clusters=5)
    stream = VideoStream(model, processor, attention_frames=4)
    stream.add_frames(random_clip(0, num_frames=3))
    assert torch.equal(stream.snapshot().index_map, stream.index_map()[[0, 1, 1, 2]])  # fewer frames: rows repeat
    stream.add_frames(random_clip(1, num_frames=8))
    rows = uniform_indices(11, 4)
    assert rows == [0, 3, 7, 10]
    assert torch.equal(stream.snapshot().index_map, stream.index_map()[rows])
    answer = stream.ask(QUESTION, max_new_tokens=2)
    assert answer.visual_tokens == max(4, stream.num_clusters) + 1
    assert answer.num_frames == 11 and answer.visual_tokens_clustered == 11 * 16


def test_ask_videos_and_the_pipeline_answer_a_stream_as_it_is(build_model):
    from transformers import pipeline

    import vqtoken

    model, processor = build_model(vqtoken_mode="centroids", vqtoken_max_clusters=5)
    stream = VideoStream(model, processor, attention_frames=4)
    for seed in range(2):
        stream.add_frames(random_clip(seed, num_frames=3))
    expected = stream.ask(QUESTION, max_new_tokens=3, min_new_tokens=3)
    [batched] = ask_videos(model, processor, [stream], [QUESTION], max_new_tokens=3, min_new_tokens=3)
    assert (batched.answer, batched.visual_tokens) == (expected.answer, expected.visual_tokens)
    pipe = pipeline(
        "video-text-to-text", model=model, processor=processor, pipeline_class=vqtoken.VQTokenVideoTextToTextPipeline
    )
    [result] = pipe(stream, text=QUESTION, max_new_tokens=3, min_new_tokens=3)
    assert (result["generated_text"], result["visual_tokens"]) == (expected.answer, expected.visual_tokens)
    with pytest.raises(ValueError, match="mixes"):
        ask_videos(model, processor, [stream, random_clip(0)], [QUESTION, QUESTION])


# ---------------------------------------------------------------------------------------------------------------------
# .vqt files
# ---------------------------------------------------------------------------------------------------------------------


def test_save_resume_and_extend_give_the_uninterrupted_stream(build_model, tmp_path):
    model, processor = build_model(vqtoken_mode="attention", vqtoken_max_clusters=5)
    clips = [random_clip(seed, num_frames=3) for seed in range(4)]
    whole = VideoStream(model, processor, attention_frames=4)
    for clip in clips:
        whole.add_frames(clip)

    first = VideoStream(model, processor, attention_frames=4)
    for clip in clips[:2]:
        first.add_frames(clip)
    path = first.save(tmp_path / "live.vqt")
    resumed = VideoStream.resume(path, model, processor)
    _assert_same_state(_state(first), _state(resumed))
    for clip in clips[2:]:
        resumed.add_frames(clip)
    _assert_same_state(_state(whole), _state(resumed))

    # any .vqt reader answers from the file as the stream does
    resumed.save(path)
    cached = read_cached_video(path)
    assert torch.equal(cached.codebook, resumed.snapshot().codebook)
    assert torch.equal(cached.index_map, resumed.snapshot().index_map)
    from_file = ask_cached(model, processor, [path], [QUESTION], max_new_tokens=3, min_new_tokens=3)[0]
    asked = resumed.ask(QUESTION, max_new_tokens=3, min_new_tokens=3)
    assert (from_file.answer, from_file.visual_tokens) == (asked.answer, asked.visual_tokens)
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_file_of_another_model_or_settings_is_refused_and_left_alone(build_model, tmp_path):
    model, processor = build_model(vqtoken_mode="attention", vqtoken_max_clusters=5)
    stream = VideoStream(model, processor)
    stream.add_frames(random_clip(0, num_frames=3))
    path = stream.save(tmp_path / "live.vqt")
    saved = path.read_bytes()

    other_weights, _ = build_model(seed=1, vqtoken_mode="attention", vqtoken_max_clusters=5)
    with pytest.raises(CacheMismatchError, match="model_fingerprint"):
        VideoStream.resume(path, other_weights, processor)
    other_k, _ = build_model(vqtoken_mode="attention", vqtoken_max_clusters=6)
    with pytest.raises(CacheMismatchError, match="max_clusters"):
        VideoStream.resume(path, other_k, processor)
    [offline] = encode_to_vqt(model, processor, [random_clip(1)], [tmp_path / "offline.vqt"], num_frames=4)
    with pytest.raises(CacheFormatError, match="not written by a stream"):
        VideoStream.resume(offline, model, processor)
    assert path.read_bytes() == saved


def test_a_stream_resumes_with_the_budget_it_was_written_with(build_model, tmp_path):
    model, processor = build_model(vqtoken_mode="centroids", vqtoken_max_clusters=5)
    stream = VideoStream(model, processor, micro_clusters=11)
    stream.add_frames(random_clip(0, num_frames=3))
    path = stream.save(tmp_path / "live.vqt")
    assert VideoStream.resume(path, model, processor).codebook.settings.micro_clusters == 11
    metadata = read_cached_video(path).metadata
    assert metadata["sampling"] == "stream" and metadata["stream_frames"] == "3"


# ---------------------------------------------------------------------------------------------------------------------
# Bad input: a clear error, the stream unchanged
# ---------------------------------------------------------------------------------------------------------------------


def test_bad_chunks_are_refused_and_leave_the_stream_unchanged(build_model):
    model, processor = build_model(vqtoken_mode="attention", vqtoken_max_clusters=5)
    stream = VideoStream(model, processor)
    with pytest.raises(StreamError, match="no frame yet"):
        stream.ask(QUESTION)
    stream.add_frames(random_clip(0, num_frames=3), timestamps=[0.0, 1.0, 2.0])
    before = _state(stream)
    bad_chunks = [
        (random_clip(1, num_frames=2, size=48), None, "48x48 frames, but the stream's frames are 32x32"),
        (random_clip(1, num_frames=2).astype(np.float32), None, "must be uint8"),
        (random_clip(1, num_frames=2)[..., :1], None, r"shape \(frames, height, width, 3\)"),
        (random_clip(1, num_frames=2), [1.5, 3.0], "increase"),
        (random_clip(1, num_frames=2), [3.0], "2 timestamps|1 timestamps"),
        ([], None, "no frame"),
    ]
    for frames, timestamps, message in bad_chunks:
        with pytest.raises(StreamError, match=message):
            stream.add_frames(frames, timestamps=timestamps)
        _assert_same_state(before, _state(stream))
    stream.close()
    with pytest.raises(StreamError, match="closed"):
        stream.add_frames(random_clip(1, num_frames=2))
    assert stream.ask(QUESTION, max_new_tokens=2).num_frames == 3


def test_nan_tokens_are_refused_before_anything_changes(camera_features):
    features, settings = camera_features
    codebook = IncrementalCodebook(settings)
    codebook.fold(features[:4])
    before = {name: tensor.clone() for name, tensor in codebook.state_tensors().items()}
    broken = features[4:8].clone()
    broken[1, 3, 5] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        codebook.fold(broken)
    with pytest.raises(ValueError, match="shape"):
        codebook.fold(features[4:8, :10])
    for name, tensor in codebook.state_tensors().items():
        assert torch.equal(tensor, before[name]), name


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"vqtoken_mode": "off"}, "not 'off'"),
        (
            {"vqtoken_selection_method": "silhouette", "vqtoken_min_clusters": 2, "vqtoken_max_clusters": 6},
            "silhouette needs every token",
        ),
    ],
)
def test_settings_a_stream_cannot_use_are_refused(build_model, settings, message):
    model, processor = build_model(**settings)
    with pytest.raises(ValueError, match=message):
        VideoStream(model, processor)


# ---------------------------------------------------------------------------------------------------------------------
# Files read window by window
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def indexed_clip(tmp_path_factory):
    """45 frames at 10 frames/s, each a colour of the palette (frame `i` can be told from the pixels)."""
    path = tmp_path_factory.mktemp("clips") / "colours.mkv"
    return write_test_video(path, index_colors(45, 32, 32), fps=10, codec="ffv1", pix_fmt="bgr0")


def test_windows_sample_a_file_exactly_as_load_video(indexed_clip):
    whole = load_video(indexed_clip, fps=3)
    windows = read_windows(indexed_clip, fps=3, window=4)
    decoded = list(windows)
    assert windows.num_frames == len(whole.indices) == 14
    assert [len(window.indices) for window in decoded] == [4, 4, 4, 2]
    assert sum((window.indices for window in decoded), []) == whole.indices
    assert np.array_equal(np.concatenate([window.frames for window in decoded]), whole.frames)
    assert windows.num_source_frames == whole.num_source_frames == 45
    assert [(window.num_source_frames, window.duration) for window in decoded] == [(45, whole.duration)] * 4
    later = list(read_windows(indexed_clip, fps=3, window=4, after_index=whole.indices[5]))
    assert sum((window.indices for window in later), []) == whole.indices[6:]
    with av.open(str(indexed_clip)) as container:  # an open container is sampled as frames arrive
        live = list(read_windows(container, fps=3, window=5))
    assert sum((window.indices for window in live), []) == whole.indices
    assert np.array_equal(np.concatenate([window.frames for window in live]), whole.frames)


def test_a_stream_follows_a_growing_file(build_model, indexed_clip, tmp_path):
    model, processor = build_model(vqtoken_mode="centroids", vqtoken_max_clusters=5)
    growing = tmp_path / "growing.mkv"
    data = indexed_clip.read_bytes()
    growing.write_bytes(data[: len(data) // 2])
    stream = VideoStream(model, processor)
    with pytest.warns(RuntimeWarning, match="breaks part-way|reading packets failed"):
        stream.add_video(growing, fps=3, window=4)
    seen = stream.num_frames
    assert 0 < seen < 14
    growing.write_bytes(data)
    stream.add_video(growing, fps=3, window=4)
    assert stream.num_frames == 14
    assert stream.frame_times == pytest.approx(load_video(indexed_clip, fps=3).timestamps)
    shutil.copy(indexed_clip, growing)
    with pytest.raises(StreamError, match="reads"):
        stream.add_video(indexed_clip, fps=3)
    with pytest.raises(StreamError, match="frames/s"):
        stream.add_video(growing, fps=2)


def test_encode_stream_resumes_and_refuses_another_video(build_model, indexed_clip, tmp_path):
    model, processor = build_model(vqtoken_mode="attention", vqtoken_max_clusters=5)
    output = tmp_path / "colours.vqt"
    assert encode_stream(model, processor, indexed_clip, output, fps=3, window=4)
    assert not encode_stream(model, processor, indexed_clip, output, fps=3, window=4)  # nothing new
    whole = VideoStream(model, processor)
    whole.add_video(indexed_clip, fps=3, window=4)
    _assert_same_state(_state(whole), _state(VideoStream.resume(output, model, processor)))
    other = write_test_video(
        tmp_path / "other.mkv", index_colors(45, 32, 32)[::-1].copy(), fps=10, codec="ffv1", pix_fmt="bgr0"
    )
    with pytest.raises(StreamError, match="reads"):
        encode_stream(model, processor, other, output, fps=3, window=4)


def test_encode_stream_goes_on_with_a_grown_file(build_model, indexed_clip, tmp_path):
    model, processor = build_model(vqtoken_mode="attention", vqtoken_max_clusters=5)
    growing, output = tmp_path / "growing.mkv", tmp_path / "growing.vqt"
    data = indexed_clip.read_bytes()
    growing.write_bytes(data[: len(data) // 2])
    with pytest.warns(RuntimeWarning, match="breaks part-way|reading packets failed"):
        assert encode_stream(model, processor, growing, output, fps=3, window=4)
    assert 0 < VideoStream.resume(output, model, processor).num_frames < 14
    growing.write_bytes(data)
    assert encode_stream(model, processor, growing, output, fps=3, window=4)  # the frames after the saved ones
    resumed = VideoStream.resume(output, model, processor)
    assert resumed.num_frames == 14
    assert resumed.attention_frames == VideoStream(model, processor).attention_frames
    assert resumed.frame_times == pytest.approx(load_video(indexed_clip, fps=3).timestamps)


# ---------------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------------


def test_cli_ask_and_encode_stream_a_video_with_fps(indexed_clip, tmp_path, capsys):
    common = ["--mode", "centroids", "--max-clusters", "5", "--max-new-tokens", "2", "--chunk-frames", "4", "--quiet"]
    assert vqtoken_main(["ask", str(indexed_clip), QUESTION, "--fps", "3", "--json", *common]) == 0
    streamed = json.loads(capsys.readouterr().out)
    assert streamed["num_frames"] == 14 and streamed["num_clusters"] == 5 and streamed["visual_tokens"] == 6
    assert list(streamed["timings"]) == ["stream", "tokens", "preprocess", "prefill", "generation"]

    output = tmp_path / "colours.vqt"
    encode = [
        "encode",
        str(indexed_clip),
        "-o",
        str(output),
        "--fps",
        "3",
        "--chunk-frames",
        "4",
        "--quiet",
        "--mode",
        "centroids",
        "--max-clusters",
        "5",
    ]
    assert vqtoken_main(encode) == 0
    assert "1 encoded" in capsys.readouterr().out
    assert vqtoken_main(encode) == 0
    assert "1 already done" in capsys.readouterr().out
    assert vqtoken_main(["ask", str(output), QUESTION, "--json", *common[:6], "--quiet"]) == 0
    cached = json.loads(capsys.readouterr().out)
    assert (cached["answer"], cached["visual_tokens"]) == (streamed["answer"], streamed["visual_tokens"])

    assert vqtoken_main(["ask", str(indexed_clip), QUESTION, "--fps", "3", "--mode", "off", "--quiet"]) == 2
    assert "--fps" in capsys.readouterr().err
    assert vqtoken_main(["ask", str(output), QUESTION, "--fps", "3", "--quiet"]) == 2
