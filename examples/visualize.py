"""Draw the clusters of a video: every patch of the sampled frames coloured by its cluster, and the cluster sizes.

    python examples/visualize.py [VIDEO] [--model ID_OR_DIR] [--out clusters.png]

The same as `vqtoken visualize VIDEO --out clusters.png`. Without a video a generated clip is used; without --model the
built-in default (RANDOM weights: the clusters come from a random vision tower).
"""

import argparse
import tempfile

import vqtoken  # noqa: F401
from vqtoken.demo import build_random_demo_model
from vqtoken.synthetic import make_moving_square_clip, write_clip
from vqtoken.video_io import load_video
from vqtoken.visualize import cluster_video, draw_clusters, save_atomically


parser = argparse.ArgumentParser()
parser.add_argument("video", nargs="?")
parser.add_argument("--model")
parser.add_argument("--out", default="clusters.png")
args = parser.parse_args()

if args.model:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(args.model).eval()
    processor = AutoProcessor.from_pretrained(args.model)
else:
    model, processor = build_random_demo_model(vqtoken_selection_method="elbow")
video = args.video or write_clip(tempfile.mkdtemp() + "/square.mp4", make_moving_square_clip(32, 112, 112), fps=8)

clusters = cluster_video(model, processor, load_video(video, num_frames=8))
save_atomically(draw_clusters(clusters), args.out)
print(f"wrote {args.out}: K = {clusters.num_clusters}, tokens per cluster {clusters.cluster_sizes}")
