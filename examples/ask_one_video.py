"""Ask one question about one video from Python.

    python examples/ask_one_video.py [VIDEO] [--model ID_OR_DIR]

Without a video a generated clip is used; without --model the built-in default (a small model trained on
synthetic clips of sliding shapes).
"""

import argparse
import tempfile

import vqtoken  # noqa: F401  (registers the VQToken classes with the Auto classes)
from vqtoken.demo import demo_clip
from vqtoken.inference import ask_video
from vqtoken.loading import load_model_and_processor
from vqtoken.synthetic import write_clip


parser = argparse.ArgumentParser()
parser.add_argument("video", nargs="?")
parser.add_argument("--model")
parser.add_argument("--question", default="what colour is the shape ?")
args = parser.parse_args()

model, processor = load_model_and_processor(args.model)  # None: the built-in default
video = args.video or write_clip(tempfile.mkdtemp() + "/shape.mp4", demo_clip(16), fps=8)

result = ask_video(model, processor, video, args.question, max_new_tokens=16)
print("answer:", result.answer)
print("visual tokens:", result.visual_tokens_stock, "(stock) ->", result.visual_tokens, f"(K = {result.num_clusters})")
print("seconds per stage:", {stage: round(seconds, 3) for stage, seconds in result.timings.items()})
