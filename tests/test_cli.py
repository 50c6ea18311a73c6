"""The `vqtoken` command: `ask`, `visualize`, exit codes and messages (the CLI subprocesses cost ~5 s each)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from vqtoken import cli
from vqtoken.synthetic import make_moving_square_clip, write_clip
from vqtoken.visualize import OVERLAY_ALPHA, PANEL, ClusterMap, draw_clusters, layout, palette


def vqtoken(*arguments, timeout=300):
    return subprocess.run([sys.executable, "-m", "vqtoken.cli", *arguments], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    clip = make_moving_square_clip(num_frames=16, height=112, width=112, color=(255, 0, 0), seed=1)
    return write_clip(tmp_path_factory.mktemp("clips") / "square.mp4", clip, fps=8)


def test_ask_json_reports_tokens_k_and_stages(clip_file):
    result = vqtoken("ask", str(clip_file), "what colour is the square ?", "--frames", "4", "--mode", "centroids",
                     "--selection", "fixed", "--max-clusters", "5", "--max-new-tokens", "2", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["model"] is None and report["model_label"].startswith("built-in default")
    # the built-in default: 64 px frames in 8 px patches, 8 x 8 tokens per frame (4 x 4 after stock pooling)
    assert report["num_frames"] == 4 and report["visual_tokens_clustered"] == 4 * 64
    assert report["num_clusters"] == 5 and report["visual_tokens"] == 5 + 1
    assert report["visual_tokens_stock"] == 4 * 16 + 1
    assert list(report["timings"]) == ["decode", "preprocess", "vision", "clustering", "prefill", "generation"]
    assert isinstance(report["answer"], str)
    assert "Traceback" not in result.stderr


def test_bad_option_exits_2_with_usage(clip_file):
    result = vqtoken("ask", str(clip_file), "q", "--frames", "0")
    assert result.returncode == 2
    assert "usage: vqtoken ask" in result.stderr and "--frames: expected a positive integer" in result.stderr


def test_missing_file_exits_1_with_one_line(tmp_path):
    result = vqtoken("ask", str(tmp_path / "nope.mp4"), "q")
    assert result.returncode == 1
    assert result.stderr.strip() == f"vqtoken: error: video file not found: {tmp_path / 'nope.mp4'}"


def test_not_a_video_exits_1_without_traceback(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    result = vqtoken("ask", str(text), "q", "--frames", "2", "--quiet")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("vqtoken: error: ") and "not a readable video file" in lines[-1]
    assert "Traceback" not in result.stderr


def test_setting_rejected_by_the_model_is_a_usage_error(clip_file, capsys):
    # an adaptive selection from the default's minimum of 12 clusters up to 4 is no range
    assert cli.main(["ask", str(clip_file), "q", "--selection", "elbow", "--max-clusters", "4", "--quiet"]) == 2
    assert "--max-clusters" in capsys.readouterr().err
    assert cli.main(["visualize", str(clip_file), "--out", "x.png", "--mode", "off"]) == 2
    assert cli.main(["ask", str(clip_file), "q", "--model", "./no/such/folder"]) == 1
    assert capsys.readouterr().err.strip().endswith("model folder not found: ./no/such/folder")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["ask", str(clip_file)])  # no question
    assert exit_info.value.code == 2


def test_visualize_writes_a_cluster_picture(clip_file, tmp_path):
    out = tmp_path / "clusters.png"
    result = vqtoken("visualize", str(clip_file), "--out", str(out), "--frames", "4", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    # the built-in default: 64 px frames in 8 px patches, an 8 x 8 grid per frame
    assert report["num_frames"] == 4 and report["grid"] == 8
    assert sum(report["cluster_sizes"]) == 4 * 64 and len(report["cluster_sizes"]) == report["num_clusters"]
    assert not [path for path in tmp_path.iterdir() if path != out]  # no temporary file left behind
    picture = np.asarray(Image.open(out).convert("RGB"))
    (width, height), corners = layout(4)
    assert picture.shape == (height, width, 3)
    assert picture.astype(np.float32).var() > 100
    # the first panel is split into the 8 x 8 patch grid: pixels of one patch share the cluster tint
    left, top = corners[0]
    panel = picture[top : top + PANEL, left : left + PANEL].astype(np.int32)
    cell = PANEL // 8
    centres = {tuple(panel[row * cell + cell // 2, column * cell + cell // 2]) for row in range(8) for column in
               range(8)}
    assert len(centres) >= 2


def test_draw_clusters_colours_every_patch_by_its_cluster():
    grid, num_clusters = 4, 3
    index_map = (np.arange(2 * grid * grid) % num_clusters).reshape(2, grid, grid)
    frames = np.full((2, 40, 40, 3), 100, dtype=np.uint8)
    picture = np.asarray(draw_clusters(ClusterMap(frames, index_map, num_clusters)))
    (width, height), corners = layout(2)
    assert picture.shape == (height, width, 3)
    colors = palette(num_clusters).astype(np.float32)
    cell = PANEL // grid
    for frame, (left, top) in enumerate(corners):
        for row in range(grid):
            for column in range(grid):
                pixel = picture[top + row * cell + cell // 2, left + column * cell + cell // 2]
                expected = np.rint((1 - OVERLAY_ALPHA) * 100 + OVERLAY_ALPHA * colors[index_map[frame, row, column]])
                assert np.abs(pixel.astype(np.float32) - expected).max() <= 1, (frame, row, column)


def test_encode_then_ask_the_cached_file_gives_the_same_answer(clip_file, tmp_path, capsys):
    settings = ["--frames", "4", "--mode", "centroids", "--selection", "elbow", "--max-clusters", "16"]
    cached = tmp_path / "square.vqt"
    assert cli.main(["encode", str(clip_file), "-o", str(cached), *settings, "--no-progress"]) == 0
    assert cached.exists()
    capsys.readouterr()

    question = "what colour is the square ?"
    assert cli.main(["ask", str(clip_file), question, *settings, "--max-new-tokens", "3", "--json", "--quiet"]) == 0
    direct = json.loads(capsys.readouterr().out)
    assert cli.main(["ask", str(cached), question, *settings, "--max-new-tokens", "3", "--json", "--quiet"]) == 0
    from_cache = json.loads(capsys.readouterr().out)

    assert from_cache["answer"] == direct["answer"]
    assert from_cache["num_clusters"] == direct["num_clusters"]
    assert from_cache["visual_tokens"] == direct["visual_tokens"]
    # no decoding, vision tower or clustering when asking a cached video
    assert not {"decode", "vision", "clustering"} & set(from_cache["timings"])
    assert {"decode", "vision", "clustering"} <= set(direct["timings"])
