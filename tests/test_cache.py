"""Cached video tokens (`.vqt`): round trip, refusal of other models and settings, damaged files, folder encoding."""

import json
import os

import pytest
import torch
from helpers import random_clip, video_prompt

from vqtoken import cache
from vqtoken.cache import (
    CacheFormatError,
    CacheMismatchError,
    ask_cached,
    encode_folder,
    encode_to_vqt,
    load_cached_videos,
    model_fingerprint,
    read_cached_video,
)
from vqtoken.commands import main as vqtoken_main
from vqtoken.inference import ask_video
from vqtoken.synthetic import ClipSpec, render_clip, write_clip


QUESTION = "what colour is the square ?"


def _generate(model, inputs, **kwargs):
    with torch.no_grad():
        return model.generate(
            **inputs,
            max_new_tokens=4,
            min_new_tokens=4,
            do_sample=False,
            output_scores=True,
            return_dict_in_generate=True,
            **kwargs,
        )


@pytest.mark.parametrize(
    "settings",
    [
        {"vqtoken_mode": "attention", "vqtoken_max_clusters": 5},
        {
            "vqtoken_mode": "centroids",
            "vqtoken_selection_method": "elbow",
            "vqtoken_min_clusters": 2,
            "vqtoken_max_clusters": 8,
        },
    ],
)
def test_round_trip_gives_the_same_tokens_and_logits(build_model, tmp_path, settings):
    model, processor = build_model(**settings)
    clip = random_clip(0)
    [path] = encode_to_vqt(model, processor, [clip], [tmp_path / "clip.vqt"], num_frames=4)

    inputs = processor(text=[video_prompt(processor, QUESTION)], videos=[clip], return_tensors="pt")
    direct = _generate(model, inputs)
    cached_outputs = load_cached_videos(path, model, processor, num_frames=4)
    encoded = model.encode_videos(inputs["pixel_values_videos"])
    assert torch.equal(cached_outputs.pooler_output[0], encoded.pooler_output[0])
    assert torch.equal(cached_outputs.index_maps[0], encoded.index_maps[0])

    # the prompt needs a single <video> per video: generate rewrites the run to the video's length
    text_only = processor.tokenizer([video_prompt(processor, QUESTION)], return_tensors="pt")
    from_cache = _generate(model, text_only, video_outputs=cached_outputs)
    assert torch.equal(from_cache.sequences[:, -4:], direct.sequences[:, -4:])
    for cached_scores, direct_scores in zip(from_cache.scores, direct.scores):
        torch.testing.assert_close(cached_scores, direct_scores, rtol=0, atol=1e-5)

    asked = ask_cached(model, processor, [path], [QUESTION], max_new_tokens=3, min_new_tokens=3)[0]
    fresh = ask_video(model, processor, clip, QUESTION, num_frames=4, max_new_tokens=3, min_new_tokens=3)
    assert (
        asked.answer,
        asked.num_clusters,
        asked.visual_tokens,
        asked.visual_tokens_stock,
        asked.visual_tokens_clustered,
    ) == (
        fresh.answer,
        fresh.num_clusters,
        fresh.visual_tokens,
        fresh.visual_tokens_stock,
        fresh.visual_tokens_clustered,
    )
    assert list(asked.timings) == ["load", "tokens", "preprocess", "prefill", "generation"]


def test_cache_file_is_small_and_self_describing(build_model, tmp_path):
    model, processor = build_model(vqtoken_mode="attention", vqtoken_max_clusters=5)
    [path] = encode_to_vqt(model, processor, [random_clip(1)], [tmp_path / "a.vqt"], num_frames=4)
    cached = read_cached_video(path)
    assert cached.codebook.shape == (5, 32) and cached.codebook.dtype == model.dtype
    assert cached.index_map.shape == (4, 16)
    metadata = cached.metadata
    assert metadata["num_clusters"] == "5" and metadata["num_frames"] == "4" and metadata["tokens_per_frame"] == "16"
    assert metadata["source_fingerprint"].startswith("frames:") and len(metadata["model_fingerprint"]) == 64
    assert json.loads(metadata["frame_indices"]) == [0, 1, 2, 3]
    # the index map is stored as int16; header and metadata take a few kilobytes
    payload = 5 * 32 * 4 + 4 * 16 * 2
    assert path.stat().st_size < payload + 4096


def test_a_cache_of_other_weights_is_refused(build_model, tmp_path):
    model, processor = build_model(vqtoken_mode="attention", vqtoken_max_clusters=5)
    [path] = encode_to_vqt(model, processor, [random_clip(2)], [tmp_path / "a.vqt"], num_frames=4)
    other, _ = build_model(seed=1, vqtoken_mode="attention", vqtoken_max_clusters=5)
    with pytest.raises(CacheMismatchError, match="model_fingerprint") as error:
        load_cached_videos(path, other)
    assert error.value.field == "model_fingerprint" and isinstance(error.value, ValueError)
    # the fingerprint follows in-place changes of the weights (e.g. load_state_dict, an optimiser step)
    before = model_fingerprint(model)
    with torch.no_grad():
        model.model.multi_modal_projector.linear_1.weight.add_(1.0)
    assert model_fingerprint(model) != before
    with pytest.raises(CacheMismatchError, match="model_fingerprint"):
        load_cached_videos(path, model)


@pytest.mark.parametrize(
    "name, value, field",
    [
        ("vqtoken_max_clusters", 6, "max_clusters"),
        ("vqtoken_seed", 1, "seed"),
        ("vqtoken_tolerance", 1e-3, "tolerance"),
        ("vqtoken_max_iterations", 7, "max_iterations"),
        ("vqtoken_spatial_pool", True, "tokens_per_frame"),
        ("vqtoken_selection_method", "elbow", "selection_method"),
        ("vision_feature_layer", -2, "vision_feature_layer"),
        ("vision_feature_select_strategy", "default", "vision_feature_select_strategy"),
    ],
)
def test_a_cache_made_with_other_settings_is_refused(build_model, tmp_path, name, value, field):
    model, processor = build_model(vqtoken_mode="attention", vqtoken_max_clusters=5)
    [path] = encode_to_vqt(model, processor, [random_clip(3)], [tmp_path / "a.vqt"], num_frames=4)
    setattr(model.config, name, value)
    with pytest.raises(CacheMismatchError) as error:
        load_cached_videos(path, model)
    assert error.value.field == field and field in str(error.value)


def test_other_structure_processor_frames_and_min_clusters_are_refused_but_mode_is_free(build_model, tmp_path):
    model, processor = build_model(
        vqtoken_mode="centroids", vqtoken_selection_method="elbow", vqtoken_min_clusters=2, vqtoken_max_clusters=8
    )
    [path] = encode_to_vqt(model, processor, [random_clip(4)], [tmp_path / "a.vqt"], num_frames=4)
    wider, _ = build_model(
        hidden_size=64,
        vqtoken_mode="centroids",
        vqtoken_selection_method="elbow",
        vqtoken_min_clusters=2,
        vqtoken_max_clusters=8,
    )
    with pytest.raises(CacheMismatchError, match="hidden_size"):
        load_cached_videos(path, wider)
    with pytest.raises(CacheMismatchError, match="num_frames"):
        load_cached_videos(path, model, num_frames=8)
    processor.video_processor.image_mean = [0.5, 0.5, 0.5]
    with pytest.raises(CacheMismatchError, match="preprocess"):
        load_cached_videos(path, model, processor)
    model.config.vqtoken_mode = "attention"  # the mode is rebuilt from codebook + index map, so it may differ
    assert (
        load_cached_videos(path, model).pooler_output[0].shape[0] == max(4, read_cached_video(path).num_clusters) + 1
    )
    model.config.vqtoken_min_clusters = 3
    with pytest.raises(CacheMismatchError, match="min_clusters"):
        load_cached_videos(path, model)


def test_damaged_files_give_a_clear_error(build_model, tmp_path):
    model, processor = build_model(vqtoken_mode="attention", vqtoken_max_clusters=5)
    [path] = encode_to_vqt(model, processor, [random_clip(5)], [tmp_path / "a.vqt"], num_frames=4)
    data = path.read_bytes()
    cases = {
        "truncated.vqt": data[: len(data) - 10],
        "header-only.vqt": data[:20],
        "empty.vqt": b"",
        "garbage.vqt": b"not a cache at all, just text" * 10,
        "flipped.vqt": data[:-1] + bytes([data[-1] ^ 0xFF]),
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CacheFormatError):
            load_cached_videos(tmp_path / name, model)
    with pytest.raises(CacheFormatError, match="checksum"):
        read_cached_video(tmp_path / "flipped.vqt")
    # a future format version is refused with the reason
    from safetensors.torch import load, save

    cached = read_cached_video(path)
    future = save(load(data), metadata={**cached.metadata, "format_version": "99"})
    (tmp_path / "future.vqt").write_bytes(future)
    with pytest.raises(CacheFormatError, match="version"):
        read_cached_video(tmp_path / "future.vqt")
    with pytest.raises(FileNotFoundError):
        load_cached_videos(tmp_path / "missing.vqt", model)


def test_a_failed_write_leaves_no_partial_file(build_model, tmp_path, monkeypatch):
    model, processor = build_model(vqtoken_mode="attention", vqtoken_max_clusters=5)
    [path] = encode_to_vqt(model, processor, [random_clip(6)], [tmp_path / "a.vqt"], num_frames=4)
    good = path.read_bytes()

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        encode_to_vqt(model, processor, [random_clip(7)], [tmp_path / "a.vqt"], num_frames=4)
    with pytest.raises(OSError, match="disk full"):
        encode_to_vqt(model, processor, [random_clip(7)], [tmp_path / "b.vqt"], num_frames=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.vqt"]  # no temporary file, no b.vqt
    assert path.read_bytes() == good  # the old file is untouched


def _write_clips(folder, count):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        frames = render_clip(ClipSpec((255, 0, 0), seed=index), num_frames=6, height=32, width=32)
        paths.append(write_clip(folder / f"clip{index}.mp4", frames, fps=4))
    return paths


def test_folder_encoding_continues_after_a_bad_file_and_resumes(build_model, tmp_path, monkeypatch):
    model, processor = build_model(vqtoken_mode="attention", vqtoken_max_clusters=5)
    source = tmp_path / "videos"
    _write_clips(source, 1)
    _write_clips(source / "sub", 1)
    (source / "broken.mp4").write_bytes(b"this is not a video")
    output = tmp_path / "out"

    calls = []
    encode_one = cache._encode_one
    monkeypatch.setattr(cache, "_encode_one", lambda *args: calls.append(1) or encode_one(*args))
    report = encode_folder(model, processor, [source], output, num_frames=4, progress=False)
    assert sorted(p.relative_to(output).as_posix() for p in report.written) == ["clip0.vqt", "sub/clip0.vqt"]
    assert len(report.failed) == 1 and "broken.mp4" in report.failed[0][0]
    assert "2 encoded, 0 already done, 1 failed" in report.summary() and "broken.mp4" in report.summary()
    assert len(calls) == 2
    mtime = (output / "clip0.vqt").stat().st_mtime_ns

    # second run: the valid outputs are skipped, only the bad file is tried again
    report = encode_folder(model, processor, [source], output, num_frames=4, progress=False)
    assert len(report.skipped) == 2 and not report.written and len(report.failed) == 1
    assert len(calls) == 2 and (output / "clip0.vqt").stat().st_mtime_ns == mtime

    # a changed source, or a cache of other settings, is encoded again
    _write_clips(tmp_path / "other", 2)
    (source / "clip0.mp4").write_bytes((tmp_path / "other" / "clip1.mp4").read_bytes())
    report = encode_folder(model, processor, [source], output, num_frames=4, progress=False)
    assert [p.name for p in report.written] == ["clip0.vqt"] and len(report.skipped) == 1
    report = encode_folder(model, processor, [source], output, num_frames=3, progress=False)
    assert len(report.written) == 2
    assert read_cached_video(output / "sub" / "clip0.vqt").num_frames == 3


def test_encode_command_then_ask_the_cache(tmp_path, capsys):
    [video] = _write_clips(tmp_path, 1)
    assert vqtoken_main(["encode", str(video), "-o", str(tmp_path / "one.vqt"), "--frames", "4"]) == 0
    assert "1 encoded" in capsys.readouterr().out
    assert vqtoken_main(["encode", str(video), "-o", str(tmp_path / "one.vqt"), "--frames", "4"]) == 0
    assert "1 already done" in capsys.readouterr().out
    (tmp_path / "bad.mp4").write_bytes(b"nope")
    assert vqtoken_main(["encode", str(tmp_path), "-o", str(tmp_path / "out"), "--frames", "4", "--quiet"]) == 1
    printed = capsys.readouterr()
    assert "1 encoded, 0 already done, 1 failed" in printed.out
    assert (
        printed.err.strip() == f"vqtoken: error: {tmp_path / 'bad.mp4'} is not a readable video file (Invalid data "
        "found when processing input)"
    )

    # a fresh copy of the built-in default accepts the file
    from vqtoken.loading import load_model_and_processor

    model, processor = load_model_and_processor(None)
    answer = ask_cached(model, processor, [tmp_path / "one.vqt"], [QUESTION], max_new_tokens=2)[0]
    assert answer.num_frames == 4 and 12 <= answer.num_clusters <= 32
    assert answer.visual_tokens == max(4, answer.num_clusters) + 1


def test_vqtoken_encode_command(tmp_path):
    import subprocess
    import sys

    [video] = _write_clips(tmp_path, 1)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "vqtoken",
            "encode",
            str(video),
            "-o",
            str(tmp_path / "out"),
            "--frames",
            "4",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "1 encoded" in done.stdout and read_cached_video(tmp_path / "out" / "clip0.vqt").num_frames == 4
