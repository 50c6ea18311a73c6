"""`vqtoken demo`: the whole video path offline, on the built-in default model and a generated clip."""

import json

from ..modeling.vqtoken_choices import VQTOKEN_MODES, VQTOKEN_SELECTION_METHODS
from .options import positive_int, shows_progress


HELP = "Run the whole video path offline on the built-in default model and a generated clip."


def add_arguments(parser):
    parser.add_argument(
        "--frames",
        type=positive_int,
        default=None,
        help="frames sampled from the clip (default: the 8 the built-in model was trained with)",
    )
    parser.add_argument("--mode", choices=VQTOKEN_MODES, default=None, help="override the model's vqtoken_mode")
    parser.add_argument(
        "--selection",
        choices=VQTOKEN_SELECTION_METHODS,
        default="elbow",
        help="vqtoken_selection_method (default: elbow, adaptive K as in the paper's adaptive mode)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args) -> int:
    from transformers.utils import logging as transformers_logging

    from ..demo import format_report, run_demo
    from ..loading import DEFAULT_MODEL_LABEL

    if not shows_progress(args):
        transformers_logging.disable_progress_bar()

    result = run_demo(num_frames=args.frames, mode=args.mode, selection=args.selection)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(format_report(result, f"VQToken demo - {DEFAULT_MODEL_LABEL}"))
    return 0
