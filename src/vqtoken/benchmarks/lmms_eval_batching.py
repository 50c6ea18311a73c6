# Copyright 2026 The VQToken for Transformers authors. Licensed under the Apache License, Version 2.0.
"""
Throughput of the lmms-eval model `vqtoken_hf` at several batch sizes (default 1 and 8), side by side in one process.

A model answers the questions of a synthetic-clip task (`vqtoken.evaluation.synthetic_task`) through lmms-eval's
`simple_evaluate`, once per batch size in turn, for each repetition. `--model tiny` (default): the tiny test
configuration of `vqtoken.tiny` with random weights (32 px frames in 8 px patches, a 2-layer SigLIP of width 24 and a
2-layer Qwen2 of width 32, K = 32), 8 frames per video; `--model default`: the built-in default model (64 px frames,
8 frames, K = 15), whose vision tower and clustering weigh more per video. Three times per run: the model's
`generate_until` (decoding, preprocessing, vision tower, clustering, generation: what batching changes), the whole run
(with lmms-eval's task building and scoring), and the CPU time of the process during `generate_until` (all its
threads), which other jobs on a shared machine disturb less than the wall-clock time. The answers of every batch size
are checked against those of the first.

Needs the `eval` extra (lmms-eval). Usage:
    python -m vqtoken.benchmarks.lmms_eval_batching [--model tiny|default] [--requests 64] [--batch-sizes 1 8]
        [--repeats 3] [--threads 1] [--out-md table.md]
"""

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


TASK = "vqtoken_synthetic"
NUM_FRAMES = 8


def save_tiny_model(folder: Path) -> Path:
    """The tiny test configuration with random weights (seed 0) and its processor (8 frames per video) in `folder`."""
    import vqtoken
    from vqtoken.tiny import tiny_config, tiny_processor, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    config = tiny_config(tokenizer)
    torch.manual_seed(0)
    model = vqtoken.VQTokenLlavaOnevisionForConditionalGeneration(config).eval()
    processor = tiny_processor(config, tokenizer)
    processor.video_processor.num_frames = NUM_FRAMES
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def timed_run(pretrained: Path | None, batch_size: int, task_manager) -> dict:
    """One lmms-eval run at `batch_size`: model seconds, run seconds, answers by doc id, accuracy."""
    from lmms_eval.evaluator import simple_evaluate

    from vqtoken.evaluation.lmms_eval_model import VQTokenChat

    model = VQTokenChat(pretrained=pretrained, batch_size=batch_size)
    generate_until, model_seconds, model_cpu_seconds = model.generate_until, [], []

    def timed_generate_until(requests):
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            return generate_until(requests)
        finally:
            model_seconds.append(time.perf_counter() - start)
            model_cpu_seconds.append(time.process_time() - cpu_start)

    model.generate_until = timed_generate_until
    start = time.perf_counter()
    results = simple_evaluate(
        model=model, tasks=[TASK], task_manager=task_manager, log_samples=True, verbosity="ERROR"
    )
    run_seconds = time.perf_counter() - start
    return {
        "model_seconds": sum(model_seconds),
        "model_cpu_seconds": sum(model_cpu_seconds),
        "run_seconds": run_seconds,
        "answers": {sample["doc_id"]: sample["filtered_resps"][0] for sample in results["samples"][TASK]},
        "accuracy": results["results"][TASK]["accuracy,none"],
    }


def format_markdown(rows: list[dict], args, loads: tuple) -> str:
    base = rows[0]
    lines = [
        f"Measured {datetime.date.today().isoformat()} with `python -m vqtoken.benchmarks.lmms_eval_batching "
        f"--model {args.model} --requests {args.requests} --batch-sizes {' '.join(map(str, args.batch_sizes))} "
        f"--repeats {args.repeats} --threads {args.threads}` on {platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__} "
        f"({torch.get_num_threads()} thread(s)); load average {loads[0]:.1f} before, {loads[1]:.1f} after. Median of "
        f"{args.repeats} runs per batch size, run in turn.",
        "",
        "| batch size | model s (generate_until) | requests / s | speed-up | model CPU s | CPU speed-up | whole run s "
        "| accuracy | same answers |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row['batch_size']} | {row['model_seconds']:.2f} | {args.requests / row['model_seconds']:.1f} | "
            f"{base['model_seconds'] / row['model_seconds']:.2f}x | {row['model_cpu_seconds']:.2f} | "
            f"{base['model_cpu_seconds'] / row['model_cpu_seconds']:.2f}x | {row['run_seconds']:.2f} | "
            f"{row['accuracy']:.3f} | "
            f"{'yes' if row['same_answers'] else 'NO'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("tiny", "default"), default="tiny", help="see the module docstring")
    parser.add_argument("--requests", type=int, default=64, help="questions (one synthetic clip each)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=3, help="runs per batch size (the median is reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out-md", type=Path, help="also write the table to this Markdown file")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.repeats < 1 or min(args.batch_sizes) < 1:
        parser.error("--requests, --repeats and every batch size must be at least 1")
    torch.set_num_threads(args.threads)
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(key, "1")
    from lmms_eval.tasks import TaskManager

    from vqtoken.evaluation.synthetic_task import write_task

    with tempfile.TemporaryDirectory() as folder:
        os.environ["LMMS_EVAL_DATASETS_CACHE"] = str(Path(folder) / "datasets")
        write_task(Path(folder) / "tasks", TASK, num_docs=args.requests)
        task_manager = TaskManager(include_path=str(Path(folder) / "tasks"), include_defaults=False)
        pretrained = save_tiny_model(Path(folder) / "model") if args.model == "tiny" else None
        timed_run(pretrained, args.batch_sizes[0], task_manager)  # warm-up: imports, first allocations, dataset cache
        load_before = os.getloadavg()[0]
        runs = {batch_size: [] for batch_size in args.batch_sizes}
        for _ in range(args.repeats):
            for batch_size in args.batch_sizes:
                runs[batch_size].append(timed_run(pretrained, batch_size, task_manager))
        load_after = os.getloadavg()[0]
    reference = runs[args.batch_sizes[0]][0]["answers"]
    rows = [
        {
            "batch_size": batch_size,
            "model_seconds": statistics.median(run["model_seconds"] for run in batch_runs),
            "model_cpu_seconds": statistics.median(run["model_cpu_seconds"] for run in batch_runs),
            "run_seconds": statistics.median(run["run_seconds"] for run in batch_runs),
            "accuracy": batch_runs[0]["accuracy"],
            "same_answers": all(run["answers"] == reference for run in batch_runs),
        }
        for batch_size, batch_runs in runs.items()
    ]
    table = format_markdown(rows, args, (load_before, load_after))
    print(table)
    if args.out_md:
        args.out_md.write_text(table + "\n")
    return 0 if all(row["same_answers"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
