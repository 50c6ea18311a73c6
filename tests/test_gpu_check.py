"""
The GPU check's own logic, on hand-built inputs: the issue's targets read off results, the pytest report parsing, the
refusal without CUDA, and clips made without PyAV. (The measurements themselves need a GPU.)
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vqtoken import synthetic
from vqtoken.benchmarks import gpu_check


REPO_ROOT = Path(__file__).resolve().parents[1]
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")


def _kmeans_row(method, step_ms, kernel_us, num_tokens=23328, dim=896, num_clusters=32, batch=1):
    return {
        "num_tokens": num_tokens,
        "dim": dim,
        "num_clusters": num_clusters,
        "batch": batch,
        "method": method,
        "status": "ok",
        "step_ms": step_ms,
        "kernel_us": kernel_us,
        "floor_us": 10.0,
        "x_floor": step_ms * 1e3 / 10.0,
        "kernel_x_floor": kernel_us / 10.0,
    }


def _results(kmeans_rows, adaptive_setup, elbow_seconds, ttft):
    end_to_end = [{"variant": variant, "frames": 32, "ttft_s": seconds} for variant, seconds in ttft.items()]
    return {
        "stages": [
            {"name": "kmeans-bf16", "result": {"rows": kmeans_rows}},
            {
                "name": "adaptive",
                "result": {
                    "setup": adaptive_setup,
                    "rows": [
                        {"path": "ours, elbow", "backend": "triton", "median_seconds": elbow_seconds, "k": 20},
                        {"path": "ours, elbow", "backend": "torch", "median_seconds": elbow_seconds / 100, "k": 20},
                    ],
                },
            },
            {"name": "end-to-end", "result": end_to_end},
            {"name": "kmeans-fp32", "status": "not run"},
        ]
    }


def test_targets_read_off_the_results():
    rows = [
        _kmeans_row("ours-triton", 0.030, 15.0),  # kernel 1.5x the floor, Lloyd iteration 3x
        _kmeans_row("flash-kmeans", 0.050, 40.0),
        _kmeans_row("ours-triton", 0.200, 90.0, batch=8),
        _kmeans_row("flash-kmeans", 0.150, 95.0, batch=8),  # flash-kmeans wins this shape's iteration
        _kmeans_row("ours-torch", 0.010, 5.0),  # not ours-triton: ignored
    ]
    results = _results(rows, {"num_tokens": 23328, "dim": 896}, 0.0008, {"stock": 2.0, "vqtoken": 1.5, "cached": 0.05})
    found = {target["target"]: target for target in gpu_check.targets(results)}

    floor = found["memory floor, 23,328 x 896 bf16, K = 32"]
    assert floor["met"] is False and "kernel 1.50x" in floor["measured"] and "iteration 3.00x" in floor["measured"]
    assert found["adaptive selection of a 32-frame video"]["met"] is True
    flash = found["faster than flash-kmeans (bf16)"]
    assert flash["met"] is False
    assert "1 of 2 shapes" in flash["measured"] and "kernel on 2 of 2" in flash["measured"]
    assert "slower: N=23328 D=896 K=32 B=8" in flash["measured"]
    assert found["faster than flash-kmeans (fp32)"]["met"] is None
    assert found["TTFT at 32 frames, VQToken fresh"]["met"] is True
    cached = found["TTFT at 32 frames, from .vqt"]
    assert cached["met"] is True and "40.0x below" in cached["measured"]


def test_targets_not_measured_at_other_sizes():
    rows = [_kmeans_row("ours-triton", 0.001, 1.0, num_tokens=200, dim=96)]
    results = _results(rows, {"num_tokens": 200, "dim": 64}, 0.0001, {"stock": 2.0, "cached": 0.5})
    found = {target["target"]: target for target in gpu_check.targets(results)}
    assert found["memory floor, 23,328 x 896 bf16, K = 32"]["met"] is None
    assert found["adaptive selection of a 32-frame video"]["met"] is None  # a tiny video says nothing of the target
    assert found["TTFT at 32 frames, VQToken fresh"]["met"] is None  # no fresh run
    assert found["TTFT at 32 frames, from .vqt"]["met"] is False  # 4x, not 20x


def test_parse_junit(tmp_path):
    report = tmp_path / "report.xml"
    report.write_text("""<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="1" failures="1" skipped="1" tests="4">
<testcase classname="tests.test_a" name="test_ok" time="1.5"/>
<testcase classname="tests.test_a" name="test_bad" time="0.2"><failure message="assert 1 == 2">x</failure></testcase>
<testcase classname="tests.test_a" name="test_skip" time="0.0"><skipped message="needs a CUDA device"/></testcase>
<testcase classname="" name="tests.test_video_io" time="0.0"><error message="collection failure">tests/x.py:8: in
E   ImportError: no av here</error></testcase>
</testsuite></testsuites>""")
    parsed = gpu_check.parse_junit(report)
    assert [(test["test"], test["outcome"]) for test in parsed["tests"]] == [
        ("tests.test_a::test_ok", "passed"),
        ("tests.test_a::test_bad", "failed"),
        ("tests.test_a::test_skip", "skipped"),
    ]
    assert parsed["collection_errors"] == [{"module": "tests.test_video_io", "reason": "ImportError: no av here"}]
    stage = {"status": "failed", "result": parsed}
    assert gpu_check.pytest_status(stage, dry_run=False) == "failed"
    parsed["tests"].pop(1)
    assert gpu_check.pytest_status(stage, dry_run=False) == "ok"  # collection errors alone do not fail the stage
    parsed["tests"].pop(0)
    assert gpu_check.pytest_status(stage, dry_run=False) == "failed"  # on a GPU, all skipped is a failure
    assert gpu_check.pytest_status(stage, dry_run=True) == "ok"


@no_cuda
def test_refuses_without_cuda(tmp_path, capsys):
    out = tmp_path / "out"
    assert gpu_check.main(["--out", str(out)]) == 2
    assert "sees no CUDA device" in capsys.readouterr().err
    assert not out.exists()


@no_cuda
def test_script_refuses_without_cuda(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable)
    done = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "gpu_check.sh"), str(tmp_path / "out")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert "no CUDA device is visible" in done.stderr
    assert not (tmp_path / "out").exists()


def test_hidden_packages_fail_to_import(tmp_path):
    folder = gpu_check.hide_packages(tmp_path, ("av",))
    env = dict(os.environ, PYTHONPATH=str(folder))
    done = subprocess.run([sys.executable, "-c", "import av"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "ImportError: av is hidden by gpu_check --dry-run" in done.stderr


def test_clips_without_pyav(monkeypatch, tmp_path):
    monkeypatch.setattr(synthetic, "av", None)
    clip = synthetic.render_clip(synthetic.ClipSpec((255, 0, 0), seed=1), 3, 16, 20)
    assert clip.shape == (3, 16, 20, 3) and clip.dtype == np.uint8
    with pytest.raises(RuntimeError, match="needs PyAV"):
        synthetic.write_clip(tmp_path / "clip.mp4", clip)
    assert not (tmp_path / "clip.mp4").exists()
