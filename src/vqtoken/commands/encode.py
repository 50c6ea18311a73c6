"""`vqtoken encode VIDEO_OR_FOLDER... -o OUT`: encode videos once into `.vqt` files (see `vqtoken.cache`)."""

import sys

from .errors import UsageError
from .options import add_model_options, load_model, shows_progress


HELP = "Encode videos once into .vqt files (codebook + index map), to ask them many questions later."


def add_arguments(parser):
    parser.add_argument("videos", nargs="+", help="video files and/or folders of videos")
    parser.add_argument("-o", "--output", required=True,
                        help="output folder (one .vqt per video), or a .vqt file when encoding one video")
    add_model_options(parser)
    parser.add_argument("--overwrite", action="store_true", help="re-encode videos whose .vqt is already valid")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    """Prints a summary on stdout and one `vqtoken: error:` line per video that failed (exit 1 if any did)."""
    from ..cache import collect_videos, encode_folder

    try:
        collect_videos(args.videos, args.output)
    except ValueError as error:
        raise UsageError(str(error)) from None
    model, processor, _ = load_model(args)
    report = encode_folder(model, processor, args.videos, args.output, num_frames=args.frames,
                           overwrite=args.overwrite, progress=shows_progress(args))
    print(report.counts())
    for source, error in report.failed:
        print(f"vqtoken: error: {error if source in error else f'{source}: {error}'}", file=sys.stderr)
    return 1 if report.failed else 0
