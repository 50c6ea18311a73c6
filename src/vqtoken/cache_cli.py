"""
`vqtoken encode VIDEO... -o OUT`: encode videos once into `.vqt` files (see `vqtoken.cache`).

`add_encode_arguments(parser)` fills a parser (e.g. a `vqtoken encode` sub-command) and sets `run=run_encode`;
`python -m vqtoken.cache_cli VIDEO... -o OUT` runs the same without the main command.
"""

import logging
from pathlib import Path

from .cli import add_stream_arguments


def add_encode_arguments(parser, model_arguments: bool = True):
    """
    Adds the arguments of `vqtoken encode` to `parser` and sets `run=run_encode`. With `model_arguments=False` the
    caller supplies `--model` and `--frames` itself (the `vqtoken` command shares them with its other sub-commands).
    """
    parser.add_argument("videos", nargs="+", help="video files and/or folders of videos")
    parser.add_argument("-o", "--output", required=True,
                        help="output folder (one .vqt per video), or a .vqt file when encoding one video")
    if model_arguments:
        parser.add_argument("--model", default=None,
                            help="model folder or Hub id (default: the built-in default model)")
        parser.add_argument("--frames", type=int, default=32, help="frames sampled per video (default 32)")
    add_stream_arguments(parser)
    parser.add_argument("--overwrite", action="store_true",
                        help="re-encode videos whose .vqt is already valid (with --fps: start afresh instead of "
                             "resuming a stream file)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run_encode)
    return parser


def run_encode(args, load=None) -> int:
    """
    Runs `vqtoken encode`; prints a summary, returns 1 when a video failed. `load()` returns `(model, processor)`
    (default: [`load_model_and_processor`] of `args.model`).
    """
    from .cache import CACHE_SUFFIX, EncodeReport, encode_folder, encode_videos, output_is_current, source_fingerprint

    from .demo import load_model_and_processor

    output = Path(args.output)
    single = output.suffix.lower() == CACHE_SUFFIX
    if single and (len(args.videos) != 1 or Path(args.videos[0]).is_dir()):
        print("error: a .vqt output path takes exactly one video file; give a folder for several")
        return 2
    model, processor = load() if load is not None else load_model_and_processor(args.model)
    if args.fps is not None:
        report = encode_streams(model, processor, args, output, single)
        if isinstance(report, int):
            return report
    elif single:
        report = EncodeReport()
        try:
            source = source_fingerprint(args.videos[0])
            if not args.overwrite and output.exists() and output_is_current(output, model, source, processor,
                                                                            args.frames):
                report.skipped.append(output)
            else:
                report.written += encode_videos(model, processor, [args.videos[0]], [output], args.frames)
        except Exception as error:
            report.failed.append((args.videos[0], f"{type(error).__name__}: {error}"))
    else:
        report = encode_folder(model, processor, args.videos, output, num_frames=args.frames, overwrite=args.overwrite,
                               progress=not args.no_progress)
    print(report.summary())
    return 1 if report.failed else 0


def encode_streams(model, processor, args, output: Path, single: bool):
    """
    `vqtoken encode --fps`: streams each video into its `.vqt` file (`vqtoken.streaming.encode_stream`: window by
    window, with checkpoints; a stream file already there of the same video and model is resumed).

    Returns:
        [`EncodeReport`], or an exit code (2) for settings a stream cannot use.
    """
    from tqdm.auto import tqdm

    from .cache import EncodeReport, output_paths
    from .streaming import VideoStream, encode_stream

    try:
        VideoStream(model, processor, attention_frames=args.frames)
    except ValueError as error:
        print(f"error: argument --fps: {error}")
        return 2
    pairs = [(Path(args.videos[0]), output)] if single else output_paths(args.videos, output)
    report = EncodeReport()
    for source, target in pairs:
        bar = tqdm(total=0, desc=f"streaming {source.name}", unit="frame", disable=args.no_progress, leave=False)
        try:
            added = encode_stream(model, processor, source, target, args.fps, attention_frames=args.frames,
                                  window=args.chunk_frames, overwrite=args.overwrite, progress=bar)
            (report.written if added else report.skipped).append(target)
        except Exception as error:  # one bad file must not stop a folder
            report.failed.append((str(source), f"{type(error).__name__}: {error}"))
        finally:
            bar.close()
    return report


def main(argv: list[str] | None = None) -> int:
    """`python -m vqtoken.cache VIDEO... -o OUT`: the same as `vqtoken encode`."""
    import argparse

    parser = add_encode_arguments(argparse.ArgumentParser(prog="vqtoken encode", description="Encode videos once."))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
