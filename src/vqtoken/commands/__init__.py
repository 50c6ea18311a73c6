"""
The `vqtoken` command line.

One module per subcommand in this folder, each a thin layer over a library call: `HELP` (one line), `add_arguments
(parser)` and `run(args) -> exit code`. Options shared by several commands are defined once in `options.py`; the
error policy is defined once in `errors.py`. Importing a command module imports neither torch nor transformers, so
`vqtoken --help` answers at once; the work is imported inside `run`.
"""

import argparse
import importlib
import logging
import sys

from .errors import exit_code_for


COMMANDS = ("demo", "ask", "visualize", "encode", "convert", "push", "train")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vqtoken", description="VQToken: extreme video-token reduction.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress; show tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        command = importlib.import_module(f".{name}", __name__)
        subparser = subparsers.add_parser(name, help=command.HELP, description=command.HELP)
        command.add_arguments(subparser)
        subparser.set_defaults(run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs `vqtoken ARGS`; returns the exit code (0 success, 1 a known error, 2 bad usage, 130 interrupted)."""
    args = build_parser().parse_args(argv)  # exits with 2 on bad usage
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("vqtoken: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        code = exit_code_for(error, verbose=args.verbose)
        if code is None:
            raise  # not a user's mistake: a bug, shown with its traceback
        return code


__all__ = ["COMMANDS", "build_parser", "main"]
