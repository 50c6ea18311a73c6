"""Ask a live video while it plays: frames come from a synthetic "camera", questions are asked as the video grows.

    python examples/live_stream.py [--seconds 240] [--chunk 8] [--ask-every 32] [--mode attention|centroids]
        [--selection fixed|elbow|elbow_corrected]

The camera shows one scene a minute (a few coloured shapes sliding over a dark background, as in the built-in default
model's training clips), one frame a second. Each chunk of frames goes through the vision tower and into the stream's
incremental codebook at once; every `--ask-every` seconds of video the stream is asked about what it has seen so far,
without stopping the camera or re-clustering anything. The built-in default model was trained on single 8-frame clips,
so its answers describe the whole video seen so far only loosely; the scene on screen is printed for comparison.
"""

import argparse
import time

import torch

from vqtoken.loading import load_model_and_processor
from vqtoken.streaming import VideoStream
from vqtoken.synthetic_camera import camera_frames, scene_specs
from vqtoken.training.synthetic_data import QUESTIONS


parser = argparse.ArgumentParser()
parser.add_argument("--seconds", type=int, default=240, help="length of the live video (1 frame a second)")
parser.add_argument("--chunk", type=int, default=8, help="frames per chunk")
parser.add_argument("--ask-every", type=int, default=32, help="seconds of video between two rounds of questions")
parser.add_argument("--mode", choices=("attention", "centroids"), default="attention")
parser.add_argument(
    "--selection",
    choices=("fixed", "elbow", "elbow_corrected"),
    default="elbow_corrected",
    help="how K is chosen in [vqtoken_min_clusters, vqtoken_max_clusters] = [12, 15]",
)
args = parser.parse_args()

torch.set_num_threads(1)
SCENE_SECONDS = 60
model, processor = load_model_and_processor(None, vqtoken_mode=args.mode, vqtoken_selection_method=args.selection)
# the default model was trained on 8 frames: its VQ-Attention reads 8 index-map rows spread over the video
stream = VideoStream(model, processor, attention_frames=8)
scenes = scene_specs(-(-args.seconds // SCENE_SECONDS), seed=0)

camera = camera_frames(args.seconds, window=args.chunk, scene_frames=SCENE_SECONDS, seed=0)
next_question_time = args.ask_every
for frames in camera:
    first = stream.num_frames
    stream.add_frames(frames, timestamps=[float(second) for second in range(first, first + len(frames))])
    if stream.num_frames < next_question_time and stream.num_frames < args.seconds:
        continue
    next_question_time += args.ask_every
    on_screen = scenes[(stream.num_frames - 1) // SCENE_SECONDS]
    start = time.perf_counter()
    answers = {kind: stream.ask(question, max_new_tokens=1).answer for kind, question in QUESTIONS.items()}
    seconds = time.perf_counter() - start
    print(
        f"t={stream.num_frames:4d} s  K={stream.num_clusters:2d}  answers: "
        + ", ".join(f"{kind} {answer!r}" for kind, answer in answers.items())
        + f"  ({seconds:.2f} s for {len(answers)} questions)"
        + f"  | on screen: {on_screen.colour} {on_screen.shape} x{on_screen.count} moving {on_screen.direction}"
    )
stream.close()
print(f"{stream.num_frames} frames seen, K={stream.num_clusters}, index map {tuple(stream.index_map().shape)}")
