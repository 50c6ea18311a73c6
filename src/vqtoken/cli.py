"""
The `vqtoken` command.

Each subcommand is registered by a small `add_<name>(subparsers)` function listed in `COMMANDS`; it sets `run` (a
function `args -> exit code`) with `parser.set_defaults`. Shared pieces for new subcommands: `add_model_arguments`
(`--model`, the VQToken settings, `--device`, `--dtype`), `load_model`, `progress`, and `CommandError` (a one-line
error, exit code 1).

Exit codes: 0 success; 2 bad usage or option (argparse, or a setting the model rejects); 1 a file that is missing or not
a video, a model that cannot be loaded, or another runtime error, with one `vqtoken: error: ...` line on stderr (the
traceback too with `--verbose`).
"""

import argparse
import contextlib
import json
import logging
import sys
import time
import traceback
from pathlib import Path


logger = logging.getLogger(__name__)

MODES = ("attention", "centroids", "off")
SELECTIONS = ("fixed", "elbow", "elbow_corrected", "silhouette")
DTYPES = ("auto", "float32", "bfloat16", "float16")


class CommandError(Exception):
    """A failure to report as one `vqtoken: error: ...` line with exit code 1."""


class UsageError(Exception):
    """A bad option found after parsing (e.g. a setting the model rejects): exit code 2."""


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


# ----------------------------------------------------------------------------------------------------------- shared


def add_model_arguments(parser: argparse.ArgumentParser, default_frames: int = 32):
    """`--model`, `--frames`, the VQToken settings that override the loaded configuration, `--device`, `--dtype`."""
    parser.add_argument(
        "--model", metavar="ID_OR_DIR", help="Hub id or folder of a VQToken model (default: the built-in default)"
    )
    parser.add_argument(
        "--frames", type=positive_int, default=default_frames,
        help=f"frames sampled uniformly over the video (default {default_frames})",
    )
    parser.add_argument("--mode", choices=MODES, help="override vqtoken_mode")
    parser.add_argument("--selection", choices=SELECTIONS, help="override vqtoken_selection_method")
    parser.add_argument("--min-clusters", type=positive_int, help="override vqtoken_min_clusters")
    parser.add_argument("--max-clusters", type=positive_int, metavar="K", help="override vqtoken_max_clusters")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:1', ...")
    parser.add_argument("--dtype", choices=DTYPES, default="auto", help="'auto': bfloat16 on CUDA, float32 on CPU")


def add_stream_arguments(parser: argparse.ArgumentParser):
    """`--fps` (stream the video: decode, encode and cluster it window by window) and `--chunk-frames`."""
    parser.add_argument(
        "--fps", type=positive_float,
        help="sample this many frames per second of video and stream them: decoded, encoded and clustered "
             "--chunk-frames at a time, so memory does not grow with the video's length; --frames is then the number "
             "of index-map rows the VQ-Attention reads, spread over the whole video",
    )
    parser.add_argument("--chunk-frames", type=positive_int, default=32,
                        help="frames per chunk with --fps (default 32)")


def add_output_arguments(parser: argparse.ArgumentParser):
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def vqtoken_overrides(args) -> dict:
    """The `vqtoken_*` configuration fields given on the command line."""
    names = {
        "mode": "vqtoken_mode",
        "selection": "vqtoken_selection_method",
        "min_clusters": "vqtoken_min_clusters",
        "max_clusters": "vqtoken_max_clusters",
    }
    return {field: getattr(args, name) for name, field in names.items() if getattr(args, name, None) is not None}


def resolve_device(text: str):
    import torch

    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise UsageError(f"argument --device: unknown device {text!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CommandError(f"--device {text}: CUDA is not available on this machine")
    return device


def resolve_dtype(text: str, device):
    import torch

    if text == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, text)


def _apply_overrides(config, overrides: dict):
    """Sets the overrides on `config` and validates them; a rejected value is a usage error (exit 2)."""
    for field, value in overrides.items():
        setattr(config, field, value)
    try:
        config.validate_vqtoken()
    except ValueError as error:
        raise UsageError(f"bad setting ({_flags(overrides)}): {error}") from None


def _flags(overrides: dict) -> str:
    names = {"vqtoken_selection_method": "--selection"}
    flags = [names.get(field, "--" + field.removeprefix("vqtoken_").replace("_", "-")) for field in overrides]
    return ", ".join(flags) or "the model's configuration"


def load_model(args):
    """
    The model and processor of `args.model` with the command-line settings applied, or the built-in default.

    Returns:
        `(model, processor, label)`: `label` names the model in reports.
    """
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    overrides = vqtoken_overrides(args)
    if args.model is None:
        from .demo import DEFAULT_MODEL_LABEL, load_default_model

        try:
            model, processor = load_default_model(**overrides)
        except ValueError as error:
            raise UsageError(f"bad setting ({_flags(overrides)}): {error}") from None
        label = DEFAULT_MODEL_LABEL
    else:
        from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

        from . import VQTokenLlavaOnevisionConfig

        if _looks_like_path(args.model) and not Path(args.model).is_dir():
            raise CommandError(f"model folder not found: {args.model}")
        try:
            config = AutoConfig.from_pretrained(args.model)
        except (OSError, ValueError) as error:
            raise CommandError(f"cannot load the model {args.model!r}: {_first_line(error)}") from error
        if not isinstance(config, VQTokenLlavaOnevisionConfig):
            raise CommandError(f"{args.model!r} is not a VQToken model (model_type {config.model_type!r})")
        _apply_overrides(config, overrides)
        try:
            model = AutoModelForImageTextToText.from_pretrained(args.model, config=config, dtype=dtype)
            processor = AutoProcessor.from_pretrained(args.model)
        except (OSError, ValueError) as error:
            raise CommandError(f"cannot load the model {args.model!r}: {_first_line(error)}") from error
        label = f"model: {args.model}"
    # the processor writes the placeholder count of the mode and K in use
    processor.vqtoken_mode = model.config.vqtoken_mode
    processor.vqtoken_max_clusters = model.config.vqtoken_max_clusters
    model = model.to(device=device, dtype=dtype).eval()
    return model, processor, label


def progress(args, total: int, description: str, unit: str = "it"):
    """A progress bar over `total` steps on stderr (rate and ETA per `unit`); off with `--quiet` or when stderr is not
    a terminal."""
    from tqdm.auto import tqdm

    disable = getattr(args, "quiet", False) or not sys.stderr.isatty()
    return tqdm(total=total, desc=description, unit=unit, file=sys.stderr, disable=disable, leave=False)


@contextlib.contextmanager
def step(bar, description: str):
    bar.set_description(description)
    yield
    bar.update(1)


def check_video_path(path: str) -> Path:
    video = Path(path)
    if not video.exists():
        raise CommandError(f"video file not found: {video}")
    if video.is_dir():
        raise CommandError(f"{video} is a directory, not a video file")
    return video


def _looks_like_path(text: str) -> bool:
    return Path(text).exists() or text.startswith((".", "/", "~")) or "\\" in text or text.count("/") > 1


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


# ------------------------------------------------------------------------------------------------------------- demo


def add_demo(subparsers):
    parser = subparsers.add_parser(
        "demo", help="Run the whole video path offline on the built-in default model and a generated clip."
    )
    parser.add_argument("--frames", type=positive_int, default=None,
                        help="frames sampled from the clip (default: the 8 the built-in model was trained with)")
    parser.add_argument("--mode", choices=MODES, default=None, help="override the model's vqtoken_mode")
    parser.add_argument("--selection", choices=SELECTIONS, default="elbow",
                        help="vqtoken_selection_method (default: elbow, adaptive K as in the paper's adaptive mode)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(run=run_demo)


def run_demo(args) -> int:
    from .demo import DEFAULT_MODEL_LABEL, format_report, run_demo

    result = run_demo(num_frames=args.frames, mode=args.mode, selection=args.selection)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(format_report(result, f"VQToken demo - {DEFAULT_MODEL_LABEL}"))
    return 0


# -------------------------------------------------------------------------------------------------------------- ask


def add_ask(subparsers):
    parser = subparsers.add_parser(
        "ask", help="Ask a question about a video: the answer, the visual tokens before -> after, K, time per stage."
    )
    parser.add_argument("video", help="path of the video file, or of a .vqt file written by `vqtoken encode`")
    parser.add_argument("question", help="the question, e.g. \"What happens in this video?\"")
    add_model_arguments(parser)
    add_stream_arguments(parser)
    parser.add_argument("--max-new-tokens", type=positive_int, default=64, help="longest answer in tokens (default 64)")
    add_output_arguments(parser)
    parser.set_defaults(run=run_ask)


def run_ask(args) -> int:
    from .cache import is_cached_video
    from .demo import format_report

    video = check_video_path(args.video)
    if args.fps is not None:
        if is_cached_video(video):
            raise UsageError("argument --fps: a .vqt file is already encoded; --fps samples a video file")
        result, label = _ask_streaming(args, video)
    else:
        result, label = _ask_offline(args, video)
    if args.json:
        report = {"video": str(video), "question": args.question, "model": args.model, "model_label": label,
                  **result.to_dict()}
        print(json.dumps(report, indent=2))
    else:
        print(format_report(result, f"VQToken - {label}"))
    return 0


def new_stream(model, processor, args):
    """
    A [`VideoStream`] of `model` reading `--frames` index-map rows; settings a stream cannot use are a usage error.
    """
    from .streaming import VideoStream

    try:
        return VideoStream(model, processor, attention_frames=args.frames)
    except ValueError as error:
        raise UsageError(f"argument --fps: {error}") from None


def _ask_streaming(args, video: Path):
    """`vqtoken ask VIDEO Q --fps F`: stream the video window by window, then ask."""
    model, processor, label = load_model(args)
    stream = new_stream(model, processor, args)
    start = time.perf_counter()
    windows = stream.windows(str(video), args.fps, args.chunk_frames)
    with progress(args, windows.num_frames, "streaming the video", unit="frame") as bar:
        for window in windows:
            stream.add_window(window)
            bar.update(len(window.indices))
            bar.set_postfix_str(f"K={stream.num_clusters}", refresh=False)
    elapsed = time.perf_counter() - start
    result = stream.ask(args.question, max_new_tokens=args.max_new_tokens)
    result.timings = {"stream": elapsed, **result.timings}
    return result, label


def _ask_offline(args, video: Path):
    from .cache import ask_cached, is_cached_video
    from .inference import answer_prompts, decode_videos, video_prompt

    with progress(args, 3, "loading the model") as bar:
        with step(bar, "loading the model"):
            model, processor, label = load_model(args)
        if is_cached_video(video):
            # a .vqt file: no decoding, vision tower or clustering
            with step(bar, "reading the cached video"):
                pass
            with step(bar, "answering"):
                result = ask_cached(model, processor, [video], [args.question], max_new_tokens=args.max_new_tokens)[0]
        else:
            with step(bar, "decoding the video"):
                start = time.perf_counter()
                decoded = decode_videos([str(video)], args.frames)
                timings = {"decode": time.perf_counter() - start}
            with step(bar, "answering"):
                prompt = video_prompt(processor, args.question)
                result = answer_prompts(
                    model, processor, [prompt], decoded, max_new_tokens=args.max_new_tokens, timings=timings
                )[0]
    return result, label


# -------------------------------------------------------------------------------------------------------- visualize


def add_visualize(subparsers):
    parser = subparsers.add_parser(
        "visualize", help="Draw the sampled frames with every patch coloured by its cluster, and the cluster sizes."
    )
    parser.add_argument("video", help="path of the video file")
    parser.add_argument("--out", required=True, help="the PNG file to write (e.g. clusters.png)")
    add_model_arguments(parser, default_frames=8)
    add_output_arguments(parser)
    parser.set_defaults(run=run_visualize)


def run_visualize(args) -> int:
    from .inference import decode_videos
    from .visualize import cluster_video, draw_clusters, save_atomically

    video = check_video_path(args.video)
    out = Path(args.out)
    if out.is_dir():
        raise CommandError(f"--out {out} is a directory: give the PNG file to write")
    if not out.parent.exists():
        raise CommandError(f"--out {out}: the folder {out.parent} does not exist")
    if args.mode == "off":
        raise UsageError("argument --mode: 'off' does not cluster; use 'centroids' or 'attention'")
    with progress(args, 4, "loading the model") as bar:
        with step(bar, "loading the model"):
            model, processor, label = load_model(args)
        with step(bar, "decoding the video"):
            decoded = decode_videos([str(video)], args.frames)[0]
        with step(bar, "clustering"):
            try:
                clusters = cluster_video(model, processor, decoded)
            except ValueError as error:
                raise CommandError(str(error)) from error
        with step(bar, "drawing"):
            save_atomically(draw_clusters(clusters, title=label), out)
    report = {"video": str(video), "out": str(out), "model": args.model, "model_label": label,
              "num_frames": int(clusters.frames.shape[0]), "grid": int(clusters.index_map.shape[1]),
              "num_clusters": clusters.num_clusters, "cluster_sizes": clusters.cluster_sizes}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"VQToken - {label}")
        print(f"wrote {out}: {report['num_frames']} frames of {report['grid']}x{report['grid']} patches, "
              f"K = {clusters.num_clusters} clusters of {min(clusters.cluster_sizes)}..{max(clusters.cluster_sizes)} "
              "tokens")
    return 0


# ------------------------------------------------------------------------------------------------------------- main

def add_encode(subparsers):
    from .cache_cli import add_encode_arguments

    parser = subparsers.add_parser(
        "encode", help="Encode videos once into .vqt files (codebook + index map), to ask them many questions later."
    )
    add_model_arguments(parser)
    add_encode_arguments(parser, model_arguments=False)
    parser.set_defaults(run=run_encode)


def run_encode(args) -> int:
    from .cache_cli import run_encode as encode

    return encode(args, load=lambda: load_model(args)[:2])


def add_convert(subparsers):
    from .conversion import add_convert_arguments, run_convert

    parser = subparsers.add_parser("convert", help="Convert the released VQToken checkpoint into a Transformers folder.")
    add_convert_arguments(parser)
    parser.set_defaults(run=run_convert)


def add_push(subparsers):
    from .publish import add_push_arguments, run_push

    parser = subparsers.add_parser("push", help="Publish a converted folder on the Hugging Face Hub (dry run unless --yes).")
    add_push_arguments(parser)
    parser.set_defaults(run=run_push)


def add_train(subparsers):
    from .training.cli import add_train_arguments

    parser = subparsers.add_parser("train", help="Fine-tune VQToken from a YAML file (accelerate, datasets, peft).")
    add_train_arguments(parser)


COMMANDS = [add_demo, add_ask, add_visualize, add_encode, add_convert, add_push, add_train]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vqtoken", description="VQToken: extreme video-token reduction.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress; show tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add_command in COMMANDS:
        add_command(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits with 2 on bad usage
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    from .video_io import VideoDecodeError

    try:
        return args.run(args)
    except UsageError as error:
        _report(args, error)
        print(f"vqtoken {args.command}: error: {error}", file=sys.stderr)
        return 2
    except (CommandError, VideoDecodeError, FileNotFoundError, ImportError, OSError, ValueError, RuntimeError) as error:
        _report(args, error)
        print(f"vqtoken: error: {_first_line(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vqtoken: interrupted", file=sys.stderr)
        return 130


def _report(args, error: BaseException):
    if args.verbose:
        traceback.print_exception(error)


if __name__ == "__main__":
    sys.exit(main())
