"""Draw the clusters of a video: every patch of the sampled frames coloured by its cluster, and the cluster sizes.

    python examples/visualize.py [VIDEO] [--model ID_OR_DIR] [--out clusters.png]

The same as `vqtoken visualize VIDEO --out clusters.png`. Without a video a generated clip is used; without --model the
built-in default.
"""

import argparse
import tempfile

import vqtoken  # noqa: F401
from vqtoken.demo import demo_clip
from vqtoken.loading import load_model_and_processor
from vqtoken.synthetic import write_clip
from vqtoken.video_io import load_video
from vqtoken.visualize import cluster_video, draw_clusters, save_atomically


parser = argparse.ArgumentParser()
parser.add_argument("video", nargs="?")
parser.add_argument("--model")
parser.add_argument("--out", default="clusters.png")
args = parser.parse_args()

model, processor = load_model_and_processor(args.model)  # None: the built-in default
video = args.video or write_clip(tempfile.mkdtemp() + "/shape.mp4", demo_clip(16), fps=8)

clusters = cluster_video(model, processor, load_video(video, num_frames=processor.default_num_frames))
save_atomically(draw_clusters(clusters), args.out)
print(f"wrote {args.out}: K = {clusters.num_clusters}, tokens per cluster {clusters.cluster_sizes}")
