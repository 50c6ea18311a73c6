"""Ask one question about one video from Python.

    python examples/ask_one_video.py [VIDEO] [--model ID_OR_DIR]

Without a video a generated clip is used; without --model the built-in default (RANDOM weights: the answer is
meaningless, the token counts and timings are real).
"""

import argparse
import tempfile

import vqtoken  # noqa: F401  (registers the VQToken classes with the Auto classes)
from vqtoken.demo import build_random_demo_model
from vqtoken.inference import ask_video
from vqtoken.synthetic import make_moving_square_clip, write_clip


parser = argparse.ArgumentParser()
parser.add_argument("video", nargs="?")
parser.add_argument("--model")
parser.add_argument("--question", default="What colour is the square?")
args = parser.parse_args()

if args.model:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(args.model).eval()
    processor = AutoProcessor.from_pretrained(args.model)
else:
    model, processor = build_random_demo_model(vqtoken_selection_method="elbow")
video = args.video or write_clip(tempfile.mkdtemp() + "/square.mp4", make_moving_square_clip(32, 112, 112), fps=8)

result = ask_video(model, processor, video, args.question, num_frames=16, max_new_tokens=16)
print("answer:", result.answer)
print("visual tokens:", result.visual_tokens_stock, "(stock) ->", result.visual_tokens, f"(K = {result.num_clusters})")
print("seconds per stage:", {stage: round(seconds, 3) for stage, seconds in result.timings.items()})
