"""
`vqtoken encode VIDEO... -o OUT`: encode videos once into `.vqt` files (see `vqtoken.cache`).

`add_encode_arguments(parser)` fills a parser (e.g. a `vqtoken encode` sub-command) and sets `run=run_encode`;
`python -m vqtoken.cache_cli VIDEO... -o OUT` runs the same without the main command.
"""

import logging
from pathlib import Path


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
        parser.add_argument("--frames", type=int, default=None,
                            help="frames sampled per video (default: the number the model expects)")
    parser.add_argument("--overwrite", action="store_true", help="re-encode videos whose .vqt is already valid")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run_encode)
    return parser


def run_encode(args, load=None) -> int:
    """
    Runs `vqtoken encode`; prints a summary, returns 1 when a video failed. `load()` returns `(model, processor)`
    (default: [`load_model_and_processor`] of `args.model`).
    """
    from .cache import CACHE_SUFFIX, EncodeReport, encode_folder, encode_videos, output_is_current, source_fingerprint
    from .loading import load_model_and_processor

    model, processor = load() if load is not None else load_model_and_processor(args.model)
    num_frames = args.frames or processor.default_num_frames
    output = Path(args.output)
    single = output.suffix.lower() == CACHE_SUFFIX
    if single:
        if len(args.videos) != 1 or Path(args.videos[0]).is_dir():
            print("error: a .vqt output path takes exactly one video file; give a folder for several")
            return 2
        report = EncodeReport()
        try:
            source = source_fingerprint(args.videos[0])
            if not args.overwrite and output.exists() and output_is_current(output, model, source, processor,
                                                                            num_frames):
                report.skipped.append(output)
            else:
                report.written += encode_videos(model, processor, [args.videos[0]], [output], num_frames)
        except Exception as error:
            report.failed.append((args.videos[0], f"{type(error).__name__}: {error}"))
    else:
        report = encode_folder(model, processor, args.videos, output, num_frames=num_frames, overwrite=args.overwrite,
                               progress=not args.no_progress)
    print(report.summary())
    return 1 if report.failed else 0


def main(argv: list[str] | None = None) -> int:
    """`python -m vqtoken.cache VIDEO... -o OUT`: the same as `vqtoken encode`."""
    import argparse

    parser = add_encode_arguments(argparse.ArgumentParser(prog="vqtoken encode", description="Encode videos once."))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
