"""The `vqtoken` command."""

import argparse
import json
import logging
import sys


def _add_demo(subparsers):
    parser = subparsers.add_parser(
        "demo", help="Run the whole video path offline on the built-in default model and a generated clip."
    )
    parser.add_argument("--frames", type=int, default=32, help="frames sampled from the clip (default 32)")
    parser.add_argument("--mode", choices=("attention", "centroids", "off"), default="attention")
    parser.add_argument(
        "--selection", choices=("fixed", "elbow", "elbow_corrected", "silhouette"), default="elbow"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(run=_run_demo)


def _run_demo(args) -> int:
    from .demo import format_report, run_demo

    result = run_demo(num_frames=args.frames, mode=args.mode, selection=args.selection)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(format_report(result, "VQToken demo - built-in default: a small model with RANDOM weights (answers are meaningless)"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vqtoken", description="VQToken: extreme video-token reduction.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_demo(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
