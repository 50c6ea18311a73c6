"""`vqtoken encode VIDEO_OR_FOLDER... -o OUT`: encode videos once into `.vqt` files (see `vqtoken.cache`)."""

import sys

from .errors import UsageError
from .options import add_model_options, add_stream_options, load_model, new_stream, shows_progress


HELP = "Encode videos once into .vqt files (codebook + index map), to ask them many questions later."


def add_arguments(parser):
    parser.add_argument("videos", nargs="+", help="video files and/or folders of videos")
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        help="output folder (one .vqt per video), or a .vqt file when encoding one video",
    )
    add_model_options(parser)
    add_stream_options(parser)
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="re-encode videos whose .vqt is already valid (with --fps: start afresh instead of "
        "resuming a stream file)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    """Prints a summary on stdout and one `vqtoken: error:` line per video that failed (exit 1 if any did)."""
    from ..cache import collect_videos, encode_folder

    try:
        pairs = collect_videos(args.videos, args.output)
    except ValueError as error:
        raise UsageError(str(error)) from None
    model, processor, _ = load_model(args)
    if args.fps is not None:
        report = _encode_streams(args, model, processor, pairs)
    else:
        report = encode_folder(
            model,
            processor,
            args.videos,
            args.output,
            num_frames=args.frames,
            overwrite=args.overwrite,
            progress=shows_progress(args),
        )
    print(report.counts())
    for source, error in report.failed:
        print(f"vqtoken: error: {error if source in error else f'{source}: {error}'}", file=sys.stderr)
    return 1 if report.failed else 0


def _encode_streams(args, model, processor, pairs):
    """`--fps`: each video streamed into its `.vqt` file (`vqtoken.streaming.encode_stream`: window by window, with
    checkpoints; a stream file already there of the same video and model is resumed)."""
    from ..cache import encode_pairs
    from ..streaming import encode_stream
    from .options import progress

    new_stream(model, processor, args)  # settings a stream cannot use are refused before any file is read

    def stream_one(source, target) -> bool:
        with progress(args, None, f"streaming {source.name}", unit="frame") as bar:
            return encode_stream(
                model,
                processor,
                source,
                target,
                args.fps,
                attention_frames=args.frames,
                window=args.chunk_frames,
                overwrite=args.overwrite,
                progress=bar,
            )

    return encode_pairs(pairs, stream_one)
