"""The `vqtoken` command: `ask`, `visualize`, exit codes and messages (the CLI subprocesses cost ~5 s each)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vqtoken.commands import main as vqtoken_main
from vqtoken.synthetic import ClipSpec, render_clip, write_clip
from vqtoken.visualize import OVERLAY_ALPHA, PANEL, ClusterMap, draw_clusters, layout, palette


def vqtoken(*arguments, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "vqtoken", *arguments], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    clip = render_clip(ClipSpec((255, 0, 0), seed=1), num_frames=16, height=112, width=112)
    return write_clip(tmp_path_factory.mktemp("clips") / "square.mp4", clip, fps=8)


def test_ask_json_reports_tokens_k_and_stages(clip_file):
    result = vqtoken(
        "ask",
        str(clip_file),
        "what colour is the square ?",
        "--frames",
        "4",
        "--mode",
        "centroids",
        "--selection",
        "fixed",
        "--max-clusters",
        "5",
        "--max-new-tokens",
        "2",
        "--json",
    )
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
    assert vqtoken_main(["ask", str(clip_file), "q", "--selection", "elbow", "--max-clusters", "4", "--quiet"]) == 2
    assert "--max-clusters" in capsys.readouterr().err
    assert vqtoken_main(["visualize", str(clip_file), "--out", "x.png", "--mode", "off"]) == 2
    assert vqtoken_main(["ask", str(clip_file), "q", "--model", "./no/such/folder"]) == 1
    assert capsys.readouterr().err.strip().endswith("model folder not found: ./no/such/folder")
    with pytest.raises(SystemExit) as exit_info:
        vqtoken_main(["ask", str(clip_file)])  # no question
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
    centres = {
        tuple(panel[row * cell + cell // 2, column * cell + cell // 2]) for row in range(8) for column in range(8)
    }
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
    assert vqtoken_main(["encode", str(clip_file), "-o", str(cached), *settings, "--quiet"]) == 0
    assert cached.exists()
    capsys.readouterr()

    question = "what colour is the square ?"
    assert (
        vqtoken_main(["ask", str(clip_file), question, *settings, "--max-new-tokens", "3", "--json", "--quiet"]) == 0
    )
    direct = json.loads(capsys.readouterr().out)
    assert vqtoken_main(["ask", str(cached), question, *settings, "--max-new-tokens", "3", "--json", "--quiet"]) == 0
    from_cache = json.loads(capsys.readouterr().out)

    assert from_cache["answer"] == direct["answer"]
    assert from_cache["num_clusters"] == direct["num_clusters"]
    assert from_cache["visual_tokens"] == direct["visual_tokens"]
    # no decoding, vision tower or clustering when asking a cached video
    assert not {"decode", "vision", "clustering"} & set(from_cache["timings"])
    assert {"decode", "vision", "clustering"} <= set(direct["timings"])


def test_one_error_policy_for_known_errors(clip_file, tmp_path, capsys):
    # a weights file cut short: one line naming the folder and the problem
    import shutil

    from vqtoken.loading import default_model_dir

    folder = tmp_path / "model"
    shutil.copytree(default_model_dir(), folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert vqtoken_main(["ask", str(clip_file), "q", "--model", str(folder), "--quiet"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"vqtoken: error: cannot load its weights from {folder}: a weights file is truncated")
    assert "\n" not in error

    # videos that are empty or cut short say so
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip_file.read_bytes()[:300])
    for video, problem in (
        (empty, "it is empty (0 bytes)"),
        (cut, "it is truncated, an MP4/MOV file cut off at 300 bytes"),
    ):
        assert vqtoken_main(["ask", str(video), "q", "--quiet"]) == 1
        assert (
            capsys.readouterr()
            .err.strip()
            .startswith(f"vqtoken: error: {video} is not a readable video file: {problem}")
        )

    # an output that cannot be written names the user's path, not a temporary file
    (tmp_path / "a-file").write_text("")
    assert vqtoken_main(["encode", str(clip_file), "-o", str(tmp_path / "a-file" / "x.vqt"), "--quiet"]) == 1
    printed = capsys.readouterr()
    assert printed.err.strip() == f"vqtoken: error: {clip_file}: {tmp_path / 'a-file' / 'x.vqt'}: Not a directory"
    assert "0 encoded, 0 already done, 1 failed" in printed.out

    # a conversion that fails: the same one-line format
    assert vqtoken_main(["convert", "--checkpoint", str(tmp_path / "a-file"), "--output", str(tmp_path / "c")]) == 1
    assert (
        capsys.readouterr().err.strip() == f"vqtoken: error: {str(tmp_path / 'a-file')!r} is a file; expected a "
        "folder or a Hub id."
    )


def test_an_unexpected_error_is_not_disguised_as_a_users_mistake(clip_file, monkeypatch):
    import vqtoken.modeling.vqtoken_inference as inference

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(inference, "ask_video", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        vqtoken_main(["ask", str(clip_file), "q", "--quiet"])


def test_a_question_that_is_not_utf8_is_a_usage_error(clip_file):
    import os

    result = subprocess.run(
        [sys.executable.encode(), b"-m", b"vqtoken", b"ask", os.fsencode(clip_file), b"caf\xe9 ?"],
        capture_output=True,
        timeout=300,
    )
    assert result.returncode == 2
    stderr = result.stderr.decode()
    assert "usage: vqtoken ask" in stderr and "argument question: not valid UTF-8" in stderr
    assert "Traceback" not in stderr


def test_help_imports_neither_torch_nor_transformers():
    code = (
        "import sys\nfrom vqtoken.commands import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert "usage: vqtoken" in result.stdout


def test_known_error_classes_are_the_ones_their_modules_define():
    import importlib

    from vqtoken.commands.errors import KNOWN_ERRORS, known_errors

    for module, name in KNOWN_ERRORS:
        error_class = getattr(importlib.import_module(module), name)
        assert error_class.__module__ == module and issubclass(error_class, Exception)
        assert error_class in known_errors()


def test_an_early_error_is_reported_without_importing_torch():
    code = (
        "import sys\nfrom vqtoken.commands.errors import CommandError, exit_code_for\n"
        "print(exit_code_for(CommandError('no such video')))\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip().splitlines() == ["1", "[]"], result.stderr
    assert result.stderr.strip() == "vqtoken: error: no such video"


def test_train_refuses_a_configuration_that_trains_nothing_in_one_line(tmp_path):
    smoke = Path(__file__).resolve().parents[1] / "examples" / "training" / "synthetic_smoke.yaml"
    result = vqtoken(
        "train",
        str(smoke),
        "train.parts={vq_attention: 1e-3}",
        "model.video_tokens=full",  # the VQ-Attention does not run on uncompressed tokens
        f"logging.output_dir={tmp_path / 'run'}",
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "vqtoken: error: No part of train.parts runs in this configuration: nothing would train."
    )
    assert "Traceback" not in result.stderr


def test_visualize_a_model_in_mode_off_is_one_error_line(clip_file, tmp_path, capsys):
    from vqtoken.loading import load_model_and_processor
    from vqtoken.modeling.configuration_vqtoken_llava_onevision import VQTokenSettingError
    from vqtoken.modeling.vqtoken_inference import decode_videos
    from vqtoken.visualize import cluster_video

    model, processor = load_model_and_processor(None, vqtoken_mode="off")
    with pytest.raises(VQTokenSettingError, match="'off' does not cluster"):
        cluster_video(model, processor, decode_videos([str(clip_file)], 4)[0])
    folder = tmp_path / "mode-off"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    out = tmp_path / "clusters.png"
    assert vqtoken_main(["visualize", str(clip_file), "--out", str(out), "--model", str(folder), "--quiet"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "vqtoken: error: `vqtoken_mode` 'off' does not cluster: use 'centroids' or 'attention' to see the clusters."
    )
    assert not out.exists()
