# Copyright 2026 The VQToken for Transformers authors. Licensed under the Apache License, Version 2.0.
"""
The GPU check: every GPU measurement of the project in one run that stops by itself, for a lent CUDA machine that has
minutes of device time, no network and no PyAV.

Stages, in order of importance, each in its own process group under its own time limit (cut further so that the whole
run ends by `--deadline`), each writing JSON that is merged into the output folder after every stage, so a stage that
runs out of time or fails still leaves what it measured:

1. `pytest -m gpu`: the CUDA tests of the Triton kernel at real sizes (modules that cannot be collected here, e.g. for
   want of PyAV, are listed, not fatal);
2. `adaptive`: the whole adaptive selection (K 12..32) of one 32-frame video (23,328 x 896 bf16 tokens) as a request,
   Triton and torch backends (`clustering_vs_released`);
3. `kmeans-bf16`, then last `kmeans-fp32`: the K-means step grid against flash-kmeans and fast-pytorch-kmeans, with the
   measured copy bandwidth and the multiple of the memory floor (`kmeans_benchmark`);
4. `end-to-end`: stock OneVision vs VQToken fresh vs from `.vqt`, 8 and 32 frames, the real 0.5B architecture with
   random weights, bf16, SDPA (`end_to_end`, frames from a `.npy` array where PyAV is missing).

The output folder receives three files, few and small so that they come back easily from a lent machine: `summary.md`
(environment, stage status, the issue's targets, every table), `results.json` (the same data) and `log.txt` (every
stage's output).
`--dry-run` runs the same stages on the CPU at tiny sizes, the Triton kernels in the interpreter and PyAV and
`datasets` hidden, to check the script before a GPU is spent on it: its numbers mean nothing.

Run it through `scripts/gpu_check.sh`, which first installs the carried wheels and this checkout.
"""

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

from vqtoken.files import write_atomically


SUMMARY_SECONDS = 10  # kept free at the end for the last summary
TERMINATE_GRACE_SECONDS = 10
PACKAGES = (
    "torch",
    "triton",
    "transformers",
    "accelerate",
    "safetensors",
    "tokenizers",
    "huggingface-hub",
    "numpy",
    "flash-kmeans",
    "fast-pytorch-kmeans",
    "av",
    "datasets",
    "vqtoken",
)
HIDDEN_IN_DRY_RUN = ("av", "datasets")  # missing on the GPU machine: a dry run hides them from its stages
TARGET_SHAPE = {"num_tokens": 23328, "dim": 896, "num_clusters": 32, "batch": 1}  # 32 frames x 729 tokens


@dataclass
class Stage:
    name: str
    title: str
    budget_s: int
    command: list[str]
    result_file: Path | None = None
    env: dict = field(default_factory=dict)


def build_stages(work: Path, dry_run: bool) -> list[Stage]:
    """The stages of a GPU run, or of a dry run (tiny sizes on the CPU, Triton interpreted)."""
    python = sys.executable
    pytest_xml = work / "pytest.xml"
    pytest = Stage(
        "pytest-gpu",
        "pytest -m gpu (CUDA tests of the Triton kernel)",
        100,
        [
            python,
            "-m",
            "pytest",
            "-m",
            "gpu",
            "-q",
            "-rA",
            "-p",
            "no:cacheprovider",
            "--continue-on-collection-errors",
            f"--junitxml={pytest_xml}",
            "tests",
        ],
        pytest_xml,
    )
    adaptive = [
        python,
        "-m",
        "vqtoken.benchmarks.clustering_vs_released",
        "--backends",
        "triton",
        "torch",
        "--skip-released",
        "--out-json",
        str(work / "adaptive.json"),
    ]
    kmeans = [python, "-m", "vqtoken.benchmarks.kmeans_benchmark"]
    end_to_end = [
        python,
        "-m",
        "vqtoken.benchmarks.end_to_end",
        "--variants",
        "stock",
        "vqtoken",
        "cached",
        "--dtype",
        "bfloat16",
        "--out-json",
        str(work / "end_to_end.json"),
    ]
    if dry_run:
        interpret = {"TRITON_INTERPRET": "1"}
        adaptive += [
            "--device",
            "cpu",
            "--dtype",
            "bfloat16",
            "--frames",
            "2",
            "--tokens-per-frame",
            "100",
            "--dim",
            "64",
            "--repeats",
            "1",
            "--threads",
            "1",
        ]
        kmeans += ["--device", "cpu", "--tiny", "--iterations", "2", "--repeats", "1"]
        end_to_end += [
            "--device",
            "cpu",
            "--size",
            "tiny",
            "--frames",
            "4",
            "8",
            "--clip-frames",
            "16",
            "--threads",
            "1",
        ]
        fp32_extra = []
    else:
        interpret = {}
        adaptive += ["--device", "cuda", "--dtype", "bfloat16", "--repeats", "10"]
        kmeans += ["--device", "cuda"]
        end_to_end += ["--device", "cuda", "--frames", "8", "32"]
        fp32_extra = ["--iterations", "10", "--repeats", "3"]  # the last and least important stage: kept short
    return [
        pytest,
        Stage(
            "adaptive",
            "Adaptive selection (K 12-32) of one 32-frame video, as a whole",
            50,
            adaptive,
            work / "adaptive.json",
            interpret,
        ),
        Stage(
            "kmeans-bf16",
            "K-means step, bf16 tokens",
            110,
            kmeans + ["--dtype", "bfloat16", "--out-json", str(work / "kmeans_bf16.json")],
            work / "kmeans_bf16.json",
            interpret,
        ),
        Stage(
            "end-to-end",
            "End to end: stock OneVision vs VQToken fresh vs from .vqt",
            150,
            end_to_end,
            work / "end_to_end.json",
        ),
        Stage(
            "kmeans-fp32",
            "K-means step, fp32 tokens",
            90,
            kmeans + ["--dtype", "float32", "--out-json", str(work / "kmeans_fp32.json")] + fp32_extra,
            work / "kmeans_fp32.json",
            interpret,
        ),
    ]


# ---------------------------------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------------------------------


def run_stage(stage: Stage, timeout_s: float, log, base_env: dict) -> dict:
    """Runs one stage in its own process group; on timeout the whole group is ended (TERM, then KILL)."""
    log.write(f"\n===== {stage.name}: {' '.join(stage.command)} (time limit {timeout_s:.0f} s)\n")
    log.flush()
    started = time.monotonic()
    process = subprocess.Popen(
        stage.command, stdout=log, stderr=subprocess.STDOUT, env={**base_env, **stage.env}, start_new_session=True
    )
    try:
        returncode = process.wait(timeout=timeout_s)
        status = "ok" if returncode == 0 else "failed"
    except subprocess.TimeoutExpired:
        _end_group(process)
        returncode, status = None, "timeout"
    seconds = time.monotonic() - started
    ending = "ran out of time" if returncode is None else f"exit code {returncode}"
    log.write(f"===== {stage.name}: ended after {seconds:.1f} s ({ending})\n")
    log.flush()
    return {
        "name": stage.name,
        "title": stage.title,
        "status": status,
        "returncode": returncode,
        "seconds": round(seconds, 1),
        "time_limit_s": round(timeout_s),
        "command": stage.command,
    }


def _end_group(process):
    for sig, wait in ((signal.SIGTERM, TERMINATE_GRACE_SECONDS), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def read_result(stage: Stage):
    """The stage's JSON (a pytest XML report for pytest), or None when it wrote nothing readable."""
    if stage.result_file is None or not stage.result_file.exists():
        return None
    try:
        if stage.result_file.suffix == ".xml":
            return parse_junit(stage.result_file)
        return json.loads(stage.result_file.read_text())
    except (ValueError, ElementTree.ParseError):
        return None


def parse_junit(path: Path) -> dict:
    """Outcome of every test case of a pytest JUnit report; modules that failed to import are listed apart."""
    tests, collection_errors = [], []
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            element = case.find(tag)
            if element is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                message = (element.get("message") or "").strip()
                break
        if outcome == "error" and "collection failure" in message:
            collection_errors.append({"module": case.get("name"), "reason": _first_error_line(case)})
            continue
        tests.append(
            {
                "test": f"{case.get('classname')}::{case.get('name')}",
                "outcome": outcome,
                "seconds": float(case.get("time") or 0.0),
                "message": message[:300],
            }
        )
    return {"tests": tests, "collection_errors": collection_errors}


def _first_error_line(case) -> str:
    text = (case.find("error").text or "").strip().splitlines()
    errors = [line for line in text if line.startswith("E ")]
    return (errors[-1][1:].strip() if errors else text[-1] if text else "")[:200]


def environment(dry_run: bool) -> dict:
    """Machine, GPU and package versions, without creating a CUDA context in this process."""
    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = None if dry_run and name in HIDDEN_IN_DRY_RUN else importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    import vqtoken

    return {
        "mode": "dry run (CPU, tiny sizes: no timing value)" if dry_run else "GPU",
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "cuda_available": torch.cuda.is_available(),
        "torch_cuda": torch.version.cuda,
        "gpu": _nvidia_smi(),
        "packages": versions,
        "vqtoken_imported_from": str(Path(vqtoken.__file__).parent),
        "checkout": _git_revision(),
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _nvidia_smi():
    fields = "name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw"
    try:
        done = subprocess.run(
            ["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.strip().splitlines()
    return [dict(zip(fields.split(","), (value.strip() for value in line.split(",")))) for line in lines] or None


def _git_revision():
    try:
        revision = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        changes = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if revision.returncode != 0:
        return None
    return {"commit": revision.stdout.strip(), "uncommitted_files": len(changes.stdout.splitlines())}


# ---------------------------------------------------------------------------------------------------------------------
# The targets, read off the results
# ---------------------------------------------------------------------------------------------------------------------


def _stage_result(results: dict, name: str):
    for stage in results["stages"]:
        if stage["name"] == name:
            return stage.get("result")
    return None


def _kmeans_rows(results: dict, name: str) -> list[dict]:
    result = _stage_result(results, name)
    return [row for row in (result or {}).get("rows", []) if row.get("status") == "ok"]


def _target(name: str, goal: str, value: str, met):
    return {"target": name, "goal": goal, "measured": value, "met": met}


def targets(results: dict) -> list[dict]:
    """The issue's targets, each with what was measured and whether it was met (None: not measured)."""
    found = []
    shape = [
        row
        for row in _kmeans_rows(results, "kmeans-bf16")
        if row["method"] == "ours-triton" and all(row[key] == value for key, value in TARGET_SHAPE.items())
    ]
    if shape:
        row = shape[0]
        found.append(
            _target(
                "memory floor, 23,328 x 896 bf16, K = 32",
                "<= 2x the floor per iteration",
                f"kernel {row['kernel_x_floor']:.2f}x ({row['kernel_us']:.1f} us), Lloyd iteration "
                f"{row['x_floor']:.2f}x ({row['step_ms'] * 1e3:.1f} us), floor {row['floor_us']:.1f} us",
                row["kernel_x_floor"] <= 2.0 and row["x_floor"] <= 2.0,
            )
        )
    else:
        found.append(
            _target("memory floor, 23,328 x 896 bf16, K = 32", "<= 2x the floor per iteration", "not measured", None)
        )

    adaptive = _stage_result(results, "adaptive") or {}
    real_size = {key: adaptive.get("setup", {}).get(key) for key in ("num_tokens", "dim")} == {
        key: TARGET_SHAPE[key] for key in ("num_tokens", "dim")
    }
    elbow = [
        row
        for row in adaptive.get("rows", [])
        if row["path"] == "ours, elbow" and row["backend"] == "triton" and real_size
    ]
    found.append(
        _target(
            "adaptive selection of a 32-frame video",
            "< 1 ms as a whole",
            f"{elbow[0]['median_seconds'] * 1e3:.3f} ms median (elbow, Triton, K = {elbow[0]['k']})"
            if elbow
            else "not measured",
            elbow[0]["median_seconds"] < 1e-3 if elbow else None,
        )
    )

    for name in ("kmeans-bf16", "kmeans-fp32"):
        rows = _kmeans_rows(results, name)
        by_shape = {}
        for row in rows:
            key = (row["num_tokens"], row["dim"], row["num_clusters"], row["batch"])
            by_shape.setdefault(key, {})[row["method"]] = row
        pairs = {key: methods for key, methods in by_shape.items() if {"ours-triton", "flash-kmeans"} <= set(methods)}
        losses = [
            f"N={n} D={d} K={k} B={b}"
            for (n, d, k, b), methods in pairs.items()
            if methods["ours-triton"]["step_ms"] >= methods["flash-kmeans"]["step_ms"]
        ]
        kernel_losses = [
            f"N={n} D={d} K={k} B={b}"
            for (n, d, k, b), methods in pairs.items()
            if methods["ours-triton"]["kernel_us"] >= methods["flash-kmeans"]["kernel_us"]
        ]
        value = (
            (
                f"Lloyd iteration faster on {len(pairs) - len(losses)} of {len(pairs)} shapes, kernel on "
                f"{len(pairs) - len(kernel_losses)} of {len(pairs)}"
                + (f"; slower: {', '.join(losses)}" if losses else "")
            )
            if pairs
            else "not measured"
        )
        found.append(
            _target(
                f"faster than flash-kmeans ({name.split('-')[1]})",
                "on every shape",
                value,
                not losses if pairs else None,
            )
        )

    runs = {(row["variant"], row["frames"]): row for row in _stage_result(results, "end-to-end") or []}
    stock, fresh, cached = (runs.get((variant, 32)) for variant in ("stock", "vqtoken", "cached"))
    found.append(
        _target(
            "TTFT at 32 frames, VQToken fresh",
            "below stock's",
            f"{fresh['ttft_s'] * 1e3:.1f} ms vs stock {stock['ttft_s'] * 1e3:.1f} ms"
            if stock and fresh
            else "not measured",
            fresh["ttft_s"] < stock["ttft_s"] if stock and fresh else None,
        )
    )
    found.append(
        _target(
            "TTFT at 32 frames, from .vqt",
            ">= 20x below stock's",
            f"{cached['ttft_s'] * 1e3:.1f} ms, {stock['ttft_s'] / cached['ttft_s']:.1f}x below stock"
            if stock and cached
            else "not measured",
            stock["ttft_s"] / cached["ttft_s"] >= 20 if stock and cached else None,
        )
    )
    return found


# ---------------------------------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def summary_markdown(results: dict) -> str:
    from vqtoken.benchmarks import end_to_end, kmeans_benchmark
    from vqtoken.benchmarks.clustering_vs_released import to_markdown as adaptive_markdown

    env = results["environment"]
    lines = [f"# GPU check, {env['date']}", "", f"Mode: **{env['mode']}**. Overall: **{results['overall']}**.", ""]
    gpus = "; ".join(", ".join(f"{key} {value}" for key, value in gpu.items()) for gpu in env["gpu"] or [])
    lines += _table(
        ["what", "value"],
        [
            ["GPU", gpus or "none visible to nvidia-smi"],
            [
                "host",
                f"{env['cpu']}, {env['cpu_count']} cores, Python {env['python']}, CUDA (torch) {env['torch_cuda']}",
            ],
            ["packages", ", ".join(f"{name} {version}" for name, version in env["packages"].items() if version)],
            ["missing", ", ".join(name for name, version in env["packages"].items() if not version) or "-"],
            ["vqtoken from", env["vqtoken_imported_from"]],
            ["checkout", json.dumps(env["checkout"])],
        ],
    )
    lines += ["", "## Stages", ""]
    lines += _table(
        ["stage", "status", "seconds", "time limit s"],
        [
            [stage["name"], stage["status"], stage.get("seconds", "-"), stage.get("time_limit_s", "-")]
            for stage in results["stages"]
        ],
    )
    lines += ["", "## Targets", ""] + targets_table(results)

    for stage in results["stages"]:
        lines += ["", f"## {stage['title']}", "", f"Status: {stage['status']}.", ""]
        result = stage.get("result")
        if result is None:
            lines.append("No result was written (see log.txt).")
        elif stage["name"] == "pytest-gpu":
            lines += _table(
                ["test", "outcome", "seconds", "message"],
                [[t["test"], t["outcome"], f"{t['seconds']:.1f}", t["message"]] for t in result["tests"]],
            )
            if result["collection_errors"]:
                lines += [
                    "",
                    "Modules not collected on this machine: "
                    + "; ".join(f"{error['module']} ({error['reason']})" for error in result["collection_errors"]),
                ]
        elif stage["name"] == "adaptive":
            lines.append(adaptive_markdown(result["header"], result["rows"]))
        elif stage["name"].startswith("kmeans"):
            lines.append(kmeans_benchmark.to_markdown(result["setup"], result["rows"]))
        elif stage["name"] == "end-to-end":
            lines.append(end_to_end.format_table(result))
    return "\n".join(lines) + "\n"


def targets_table(results: dict) -> list[str]:
    met = {True: "yes", False: "**no**", None: "not measured"}
    return _table(
        ["target", "goal", "measured", "met"],
        [[t["target"], t["goal"], t["measured"], met[t["met"]]] for t in results["targets"]],
    )


def short_report(results: dict) -> str:
    """Stage status and targets: printed last, so that the end of the output holds them."""
    lines = ["", f"GPU check ({results['environment']['mode']}): {results['overall']}", ""]
    lines += _table(
        ["stage", "status", "seconds"],
        [[stage["name"], stage["status"], stage.get("seconds", "-")] for stage in results["stages"]],
    )
    return "\n".join(lines + [""] + targets_table(results)) + "\n"


def pytest_status(stage: dict, dry_run: bool) -> str:
    """`ok` when no selected test failed and (on a GPU) at least one passed; collection errors are listed apart."""
    result = stage.get("result")
    if stage["status"] == "timeout" or result is None:
        return stage["status"] if stage["status"] != "ok" else "failed"
    outcomes = [test["outcome"] for test in result["tests"]]
    if any(outcome in ("failed", "error") for outcome in outcomes):
        return "failed"
    return "ok" if dry_run or "passed" in outcomes else "failed"


def write_outputs(out: Path, results: dict):
    results["targets"] = targets(results)
    statuses = [stage["status"] for stage in results["stages"]]
    results["overall"] = "ok" if statuses and all(status == "ok" for status in statuses) else "incomplete"
    data = json.dumps(results, indent=1).encode()
    write_atomically(out / "results.json", lambda stream: stream.write(data))
    summary = summary_markdown(results).encode()
    write_atomically(out / "summary.md", lambda stream: stream.write(summary))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder (summary.md, results.json, log.txt)")
    parser.add_argument(
        "--deadline", type=float, default=None, help="Unix time by which everything has ended (default: now + 450 s)"
    )
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU: checks the script runs")
    args = parser.parse_args(argv)
    deadline = args.deadline or time.time() + 450

    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print(
            f"gpu_check: torch {torch.__version__} sees no CUDA device here; this check needs one "
            "(--dry-run exercises it on a CPU).",
            file=sys.stderr,
        )
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"environment": environment(args.dry_run), "stages": []}
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as temporary, open(args.out / "log.txt", "a") as log:
        work = Path(temporary)
        base_env = dict(os.environ, PYTHONUNBUFFERED="1")
        if args.dry_run:
            base_env["PYTHONPATH"] = os.pathsep.join(
                [str(hide_packages(work, HIDDEN_IN_DRY_RUN)), base_env.get("PYTHONPATH", "")]
            )
            base_env["OMP_NUM_THREADS"] = "1"
        stages = build_stages(work, args.dry_run)
        results["stages"] = [{"name": stage.name, "title": stage.title, "status": "not run"} for stage in stages]
        write_outputs(args.out, results)
        for index, stage in enumerate(stages):
            time_left = deadline - time.time() - SUMMARY_SECONDS
            if time_left < 5:
                log.write(f"\n===== {stage.name}: not run, the deadline is reached\n")
                continue
            record = run_stage(stage, min(stage.budget_s, time_left), log, base_env)
            record["result"] = read_result(stage)
            if stage.name == "pytest-gpu":
                record["status"] = pytest_status(record, args.dry_run)
            results["stages"][index] = record
            write_outputs(args.out, results)
            print(f"[gpu_check] {stage.name}: {record['status']} ({record['seconds']} s)", flush=True)
    print(short_report(results) + f"\nEverything: {args.out / 'summary.md'}, results.json, log.txt")
    return 0 if results["overall"] == "ok" else 1


def hide_packages(work: Path, names) -> Path:
    """A folder of stand-ins that fail to import, to be put first on PYTHONPATH."""
    folder = work / "hidden_packages"
    for name in names:
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / "__init__.py").write_text(
            f'raise ImportError("{name} is hidden by gpu_check --dry-run: the GPU machine does not have it")\n'
        )
    return folder


if __name__ == "__main__":
    raise SystemExit(main())
