"""Ask a batch of videos one question each, in one `generate` call (each video gets its own K).

    python examples/ask_batch.py [VIDEO ...] [--model ID_OR_DIR]

Without videos three generated clips are used; without --model the built-in default.
"""

import argparse
import tempfile

import vqtoken  # noqa: F401
from vqtoken.inference import ask_videos
from vqtoken.loading import load_model_and_processor
from vqtoken.synthetic import ClipSpec, render_clip, write_clip


parser = argparse.ArgumentParser()
parser.add_argument("videos", nargs="*")
parser.add_argument("--model")
args = parser.parse_args()

model, processor = load_model_and_processor(args.model)  # None: the built-in default

videos = args.videos
if not videos:
    folder = tempfile.mkdtemp()
    clips = [
        render_clip(ClipSpec(colour, "square", direction, count=1, seed=index), num_frames=16, height=64)
        for index, (colour, direction) in enumerate([("red", "right"), ("green", "down"), ("blue", "left")])
    ]
    videos = [write_clip(f"{folder}/clip{index}.mp4", clip, fps=8) for index, clip in enumerate(clips)]
questions = ["what colour is the shape ?"] * len(videos)

for video, result in zip(videos, ask_videos(model, processor, videos, questions, max_new_tokens=16)):
    print(
        f"{video}: {result.answer!r}  tokens {result.visual_tokens_stock} -> {result.visual_tokens}, "
        f"K = {result.num_clusters}"
    )
