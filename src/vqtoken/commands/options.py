"""
Options shared by several commands, defined once: the model and its settings (`--model`, `--frames`, `--mode`,
`--selection`, `--min-clusters`, `--max-clusters`, `--device`, `--dtype`), the Hub token (`--token`), the output
switches (`--json`, `--quiet`), argument types, and the one way a command loads its model.
"""

import argparse
import sys
from pathlib import Path

from ..modeling.vqtoken_choices import VQTOKEN_MODES, VQTOKEN_SELECTION_METHODS
from .errors import CommandError, UsageError


# command-line flag -> configuration field; the choices are read off the configuration's `Literal` types
SETTING_FLAGS = {
    "mode": "vqtoken_mode",
    "selection": "vqtoken_selection_method",
    "min_clusters": "vqtoken_min_clusters",
    "max_clusters": "vqtoken_max_clusters",
}
DTYPES = ("auto", "float32", "bfloat16", "float16")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def utf8_text(text: str) -> str:
    """Command-line text that must be valid UTF-8 (Python keeps undecodable bytes as lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(f"not valid UTF-8: {text.encode('utf-8', 'backslashreplace')!r}") from None
    return text


def add_model_options(parser: argparse.ArgumentParser, frames: bool = True, settings: bool = True):
    """`--model`, `--frames` (default: the model's own count), the VQToken settings, `--device`, `--dtype`."""
    parser.add_argument(
        "--model", metavar="ID_OR_DIR", help="Hub id or folder of a VQToken model (default: the built-in default)"
    )
    if frames:
        parser.add_argument(
            "--frames",
            type=positive_int,
            default=None,
            help="frames sampled uniformly over the video (default: the number the model expects, from its folder)",
        )
    if settings:
        parser.add_argument("--mode", choices=VQTOKEN_MODES, help="override vqtoken_mode")
        parser.add_argument("--selection", choices=VQTOKEN_SELECTION_METHODS, help="override vqtoken_selection_method")
        parser.add_argument("--min-clusters", type=positive_int, help="override vqtoken_min_clusters")
        parser.add_argument("--max-clusters", type=positive_int, metavar="K", help="override vqtoken_max_clusters")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:1', ...")
    parser.add_argument("--dtype", choices=DTYPES, default="auto", help="'auto': bfloat16 on CUDA, float32 on CPU")


def add_stream_options(parser: argparse.ArgumentParser):
    """`--fps` (stream the video: decode, encode and cluster it window by window) and `--chunk-frames`."""
    parser.add_argument(
        "--fps",
        type=positive_float,
        help="sample this many frames per second of video and stream them: decoded, encoded and clustered "
        "--chunk-frames at a time, so memory does not grow with the video's length; --frames is then the number "
        "of index-map rows the VQ-Attention reads, spread over the whole video",
    )
    parser.add_argument(
        "--chunk-frames", type=positive_int, default=32, help="frames per chunk with --fps (default 32)"
    )


def new_stream(model, processor, args):
    """A [`~vqtoken.streaming.VideoStream`] of `model` reading `--frames` index-map rows; settings a stream cannot
    use are a usage error."""
    from ..streaming import VideoStream

    try:
        return VideoStream(model, processor, attention_frames=args.frames)
    except ValueError as error:
        raise UsageError(f"argument --fps: {error}") from None


def add_token_option(parser: argparse.ArgumentParser):
    parser.add_argument("--token", default=None, help="Hub token (default: the token of `hf auth login`)")


def add_output_options(parser: argparse.ArgumentParser):
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def vqtoken_overrides(args) -> dict:
    """The `vqtoken_*` configuration fields given on the command line."""
    return {
        field: getattr(args, flag) for flag, field in SETTING_FLAGS.items() if getattr(args, flag, None) is not None
    }


def flags_of(overrides: dict) -> str:
    names = {field: "--" + flag.replace("_", "-") for flag, field in SETTING_FLAGS.items()}
    return ", ".join(names[field] for field in overrides) or "the model's configuration"


def load_model(args):
    """
    The model and processor of `args.model` (the built-in default when absent) with the command-line settings
    applied, through [`vqtoken.loading.load_model_and_processor`]. An unknown device or a setting the model rejects is
    a usage error.

    Returns:
        `(model, processor, label)`: `label` names the model in reports.
    """
    from transformers.utils import logging as transformers_logging

    from ..loading import DEFAULT_MODEL_LABEL, load_model_and_processor, resolve_device
    from ..modeling.configuration_vqtoken_llava_onevision import VQTokenSettingError

    if not shows_progress(args):
        transformers_logging.disable_progress_bar()
    try:
        device = resolve_device(args.device)
    except ValueError as error:
        raise UsageError(f"argument --device: {error}") from None
    overrides = vqtoken_overrides(args)
    try:
        model, processor = load_model_and_processor(args.model, device=device, dtype=args.dtype, **overrides)
    except VQTokenSettingError as error:
        if not overrides:
            raise
        raise UsageError(f"bad setting ({flags_of(overrides)}): {error}") from None
    return model, processor, DEFAULT_MODEL_LABEL if args.model is None else f"model: {args.model}"


def existing_file(path: str, what: str = "video") -> Path:
    """`path` as a `Path`, or a [`CommandError`] when it does not exist or is a folder."""
    file = Path(path)
    if not file.exists():
        raise CommandError(f"{what} file not found: {file}")
    if file.is_dir():
        raise CommandError(f"{file} is a directory, not a {what} file")
    return file


def shows_progress(args) -> bool:
    """Progress bars go to stderr unless `--quiet` is given or stderr is not a terminal."""
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def progress(args, total: int | None, description: str, unit: str = "it"):
    """A progress bar on stderr (see [`shows_progress`])."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total, desc=description, unit=unit, file=sys.stderr, disable=not shows_progress(args), leave=False
    )
