"""Ask a batch of videos one question each, in one `generate` call (each video gets its own K).

    python examples/ask_batch.py [VIDEO ...] [--model ID_OR_DIR]

Without videos three generated clips are used; without --model the built-in default (RANDOM weights).
"""

import argparse
import tempfile

import vqtoken  # noqa: F401
from vqtoken.demo import build_random_demo_model
from vqtoken.inference import ask_videos
from vqtoken.synthetic import make_moving_square_clip, write_clip


parser = argparse.ArgumentParser()
parser.add_argument("videos", nargs="*")
parser.add_argument("--model")
args = parser.parse_args()

if args.model:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(args.model).eval()
    processor = AutoProcessor.from_pretrained(args.model)
else:
    model, processor = build_random_demo_model(vqtoken_selection_method="elbow")

videos = args.videos
if not videos:
    folder = tempfile.mkdtemp()
    clips = [((255, 0, 0), "right"), ((0, 255, 0), "down"), ((0, 0, 255), "left")]
    videos = [
        write_clip(f"{folder}/clip{index}.mp4", make_moving_square_clip(32, 112, 112, color, direction), fps=8)
        for index, (color, direction) in enumerate(clips)
    ]
questions = ["Which way does the square move?"] * len(videos)

for video, result in zip(videos, ask_videos(model, processor, videos, questions, num_frames=16, max_new_tokens=16)):
    print(f"{video}: {result.answer!r}  tokens {result.visual_tokens_stock} -> {result.visual_tokens}, K = {result.num_clusters}")
