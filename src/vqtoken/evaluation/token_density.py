"""
Visual tokens per video and TokDense of an lmms-eval run of `vqtoken_hf`, from its logged samples.

TokDense (the VQToken paper's token information density) is a score divided by the mean number of visual tokens the
language model read per video. Each logged sample of `vqtoken_hf` carries its visual tokens in `token_counts`
(`vqtoken.evaluation.lmms_eval_model.VisualTokenCounts`); lmms-eval's results give the scores. TokDense is computed for
every numeric metric of a task (or group of tasks), in that metric's own units: a fraction for `exact_match` or
`acc`, a percentage for scores lmms-eval reports in percent; the paper divides percentages.

`python -m vqtoken.evaluation.token_density OUTPUT_PATH [RESULTS.json ...]` prints the table of runs already made
with `--log_samples` and writes `<run>_tokdense.json` beside each results file; `vqtoken-lmms-eval`
(`vqtoken.evaluation.lmms_eval_run`) runs lmms-eval and does the same at the end of the run.
"""

import argparse
import json
import sys
from pathlib import Path


RESULTS_SUFFIX = "_results.json"
SUMMARY_SUFFIX = "_tokdense.json"


def as_list(value) -> list:
    """A per-request field of a record: one value, or one per round of a multi-round request."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


def video_records(samples: list[dict]) -> list[dict]:
    """The `token_counts` records of the video requests of one task's logged samples (errors left out)."""
    records = []
    for sample in samples:
        for record in sample.get("token_counts") or []:
            if record and record.get("modality") == "video" and not record.get("error"):
                records.append(record)
    return records


def video_statistics(records: list[dict]) -> dict | None:
    """Videos, mean visual tokens per video (and stock), mean K of `records`; `None` when there is no video."""
    tokens = [count for record in records for count in as_list(record["visual_tokens"])]
    if not tokens:
        return None
    stock = [count for record in records for count in as_list(record["visual_tokens_stock"])]
    clusters = [k for record in records for k in as_list(record.get("num_clusters")) if k is not None]
    return {
        "videos": len(tokens),
        "mean_visual_tokens": sum(tokens) / len(tokens),
        "mean_visual_tokens_stock": sum(stock) / len(stock),
        "mean_num_clusters": sum(clusters) / len(clusters) if clusters else None,
    }


def numeric_metrics(task_results: dict) -> dict[str, float]:
    """The scores of one task in lmms-eval's results (`"name,filter": value`), without standard errors."""
    return {
        key: float(value)
        for key, value in task_results.items()
        if "," in key and "_stderr" not in key and isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def summarize(results: dict, samples: dict[str, list[dict]]) -> dict[str, dict]:
    """
    Visual tokens and TokDense of every task (and group) of a run.

    Args:
        results: lmms-eval's results (`simple_evaluate`'s return value, or a `*_results.json`).
        samples: the logged samples of each task (`results["samples"]` of `simple_evaluate`, or the
            `*_samples_<task>.jsonl` files).

    Returns:
        `{task: {"videos", "mean_visual_tokens", "mean_visual_tokens_stock", "mean_num_clusters",
        "metrics": {metric: {"value", "tokdense"}}}}` for the tasks and groups whose samples hold videos.
    """
    records = {task: video_records(task_samples) for task, task_samples in samples.items()}
    scored = {**results.get("results", {}), **results.get("groups", {})}
    summary = {}
    for name, task_results in scored.items():
        subtasks = results.get("group_subtasks", {}).get(name) or [name]
        statistics = video_statistics([record for task in subtasks for record in records.get(task, [])])
        if statistics is None:
            continue
        mean_tokens = statistics["mean_visual_tokens"]
        statistics["metrics"] = {
            metric: {"value": value, "tokdense": value / mean_tokens}
            for metric, value in numeric_metrics(task_results).items()
        }
        summary[name] = statistics
    return summary


def format_table(summary: dict[str, dict]) -> str:
    """A Markdown table: one row per task and metric."""
    lines = [
        "| task | metric | value | videos | visual tokens / video | stock | mean K | TokDense |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for task, statistics in summary.items():
        clusters = statistics["mean_num_clusters"]
        for metric, scores in statistics["metrics"].items():
            lines.append(
                f"| {task} | {metric} | {scores['value']:.4f} | {statistics['videos']} | "
                f"{statistics['mean_visual_tokens']:.2f} | {statistics['mean_visual_tokens_stock']:.1f} | "
                f"{'-' if clusters is None else f'{clusters:.2f}'} | {scores['tokdense']:.4f} |"
            )
    return "\n".join(lines)


def read_run(results_file: Path) -> tuple[dict, dict[str, list[dict]]]:
    """lmms-eval's `<run>_results.json` and the `<run>_samples_<task>.jsonl` files beside it."""
    results = json.loads(results_file.read_text())
    run = results_file.name[: -len(RESULTS_SUFFIX)]
    samples = {}
    for task in results.get("results", {}):
        samples_file = results_file.with_name(f"{run}_samples_{task}.jsonl")
        if samples_file.is_file():
            samples[task] = [json.loads(line) for line in samples_file.read_text().splitlines() if line.strip()]
    if not samples:
        raise FileNotFoundError(
            f"No logged samples beside {results_file} ({run}_samples_<task>.jsonl): run lmms-eval with --log_samples."
        )
    return results, samples


def summarize_run(results_file: Path) -> tuple[Path, dict[str, dict]]:
    """Summarises one run and writes `<run>_tokdense.json` beside its results; returns the file and the summary."""
    summary = summarize(*read_run(results_file))
    output = results_file.with_name(results_file.name[: -len(RESULTS_SUFFIX)] + SUMMARY_SUFFIX)
    output.write_text(json.dumps(summary, indent=2) + "\n")
    return output, summary


def results_files(paths: list[Path], newer_than: float | None = None) -> list[Path]:
    """`*_results.json` files given, or found under the folders given (lmms-eval writes `<output_path>/<model>/`)."""
    found = []
    for path in paths:
        if path.is_dir():
            found += sorted(path.rglob(f"*{RESULTS_SUFFIX}"))
        elif path.is_file() and path.name.endswith(RESULTS_SUFFIX):
            found.append(path)
        else:
            raise FileNotFoundError(f"{path} is neither a folder nor an lmms-eval *{RESULTS_SUFFIX} file.")
    return [path for path in found if newer_than is None or path.stat().st_mtime >= newer_than]


def report(files: list[Path]) -> int:
    """Prints the table of each run in `files` and writes its summary; returns the number of runs summarised."""
    for results_file in files:
        output, summary = summarize_run(results_file)
        if not summary:
            print(f"{results_file}: no video request in the logged samples.")
            continue
        print(f"Visual tokens and TokDense of {results_file} (also in {output}):\n{format_table(summary)}\n")
    return len(files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vqtoken.evaluation.token_density",
        description="Visual tokens per video and TokDense of lmms-eval runs of vqtoken_hf made with --log_samples.",
    )
    parser.add_argument("paths", nargs="+", type=Path, help="lmms-eval output folders or *_results.json files")
    args = parser.parse_args(argv)
    try:
        files = results_files(args.paths)
        if not files:
            raise FileNotFoundError(f"No *{RESULTS_SUFFIX} file under {', '.join(map(str, args.paths))}.")
        report(files)
    except (FileNotFoundError, json.JSONDecodeError) as error:
        print(f"token_density: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
