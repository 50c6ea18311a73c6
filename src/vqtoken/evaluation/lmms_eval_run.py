"""
`vqtoken-lmms-eval ARGS` (or `python -m vqtoken.evaluation.lmms_eval_run ARGS`): an lmms-eval run (`python -m
lmms_eval ARGS`), then the visual tokens per video and TokDense of each task, next to lmms-eval's own table.

lmms-eval computes its scores after the model has answered, and gives a model no way to add a column to them; so the
TokDense table is made from the run's results and logged samples once lmms-eval has written them. It needs
`--output_path` and `--log_samples`, and is written beside the results as `<run>_tokdense.json`.
"""

import argparse
import sys
import time
from pathlib import Path

from .token_density import report, results_files


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--output_path")
    parser.add_argument("--log_samples", action="store_true")
    known, _ = parser.parse_known_args(argv)
    if not known.output_path or not known.log_samples:
        print(
            "vqtoken-lmms-eval: error: TokDense is computed from the logged samples: pass --output_path DIR and "
            "--log_samples (the other arguments are lmms-eval's).",
            file=sys.stderr,
        )
        return 2
    started = time.time()
    from lmms_eval.__main__ import cli_evaluate

    sys.argv = ["lmms-eval", *argv]
    cli_evaluate()
    output_path = Path(known.output_path)
    files = results_files([output_path], newer_than=started) if output_path.is_dir() else []
    if not files:
        print("vqtoken-lmms-eval: error: the run wrote no results (see lmms-eval's messages above).", file=sys.stderr)
        return 1
    report(files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
