"""`vqtoken ask VIDEO QUESTION`: the answer, the visual tokens before -> after, K and the time of each stage."""

import json
import time

from .errors import UsageError
from .options import (
    add_model_options,
    add_output_options,
    add_stream_options,
    existing_file,
    load_model,
    new_stream,
    positive_int,
    progress,
    utf8_text,
)


HELP = "Ask a question about a video: the answer, the visual tokens before -> after, K, time per stage."


def add_arguments(parser):
    parser.add_argument("video", help="path of the video file, or of a .vqt file written by `vqtoken encode`")
    parser.add_argument("question", type=utf8_text, help='the question, e.g. "What happens in this video?"')
    add_model_options(parser)
    add_stream_options(parser)
    parser.add_argument(
        "--max-new-tokens", type=positive_int, default=64, help="longest answer in tokens (default 64)"
    )
    add_output_options(parser)


def run(args) -> int:
    from ..cache import is_cached_video
    from ..demo import format_report

    video = existing_file(args.video)
    if args.fps is not None and is_cached_video(video):
        raise UsageError("argument --fps: a .vqt file is already encoded; --fps samples a video file")
    result, label = (_ask_streaming if args.fps is not None else _ask_whole)(args, video)
    if args.json:
        report = {
            "video": str(video),
            "question": args.question,
            "model": args.model,
            "model_label": label,
            **result.to_dict(),
        }
        print(json.dumps(report, indent=2))
    else:
        print(format_report(result, f"VQToken - {label}"))
    return 0


def _ask_whole(args, video):
    """The video decoded and clustered whole (or a `.vqt` file read back), then asked."""
    from ..cache import ask_cached, is_cached_video
    from ..modeling.vqtoken_inference import ask_video

    with progress(args, 2, "loading the model") as bar:
        model, processor, label = load_model(args)
        bar.update(1)
        bar.set_description("answering")
        if is_cached_video(video):
            # a .vqt file: no decoding, vision tower or clustering
            result = ask_cached(model, processor, [video], [args.question], max_new_tokens=args.max_new_tokens)[0]
        else:
            result = ask_video(
                model, processor, str(video), args.question, num_frames=args.frames, max_new_tokens=args.max_new_tokens
            )
        bar.update(1)
    return result, label


def _ask_streaming(args, video):
    """`--fps`: the video streamed window by window into an incremental codebook, then asked."""
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
