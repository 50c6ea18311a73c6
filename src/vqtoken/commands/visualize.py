"""`vqtoken visualize VIDEO --out PNG`: the sampled frames, each patch tinted by its cluster, and the cluster sizes."""

import json
from pathlib import Path

from .errors import CommandError, UsageError
from .options import add_model_options, add_output_options, existing_file, load_model, progress


HELP = "Draw the sampled frames with every patch coloured by its cluster, and the cluster sizes."


def add_arguments(parser):
    parser.add_argument("video", help="path of the video file")
    parser.add_argument("--out", required=True, help="the PNG file to write (e.g. clusters.png)")
    add_model_options(parser)
    add_output_options(parser)


def run(args) -> int:
    from ..modeling.vqtoken_inference import decode_videos
    from ..visualize import cluster_video, draw_clusters, save_atomically

    video = existing_file(args.video)
    out = Path(args.out)
    if out.is_dir():
        raise CommandError(f"--out {out} is a directory: give the PNG file to write")
    if not out.parent.exists():
        raise CommandError(f"--out {out}: the folder {out.parent} does not exist")
    if args.mode == "off":
        raise UsageError("argument --mode: 'off' does not cluster; use 'centroids' or 'attention'")
    with progress(args, 4, "loading the model") as bar:
        model, processor, label = load_model(args)
        bar.update(1)
        bar.set_description("decoding the video")
        decoded = decode_videos([str(video)], args.frames or processor.default_num_frames)[0]
        bar.update(1)
        bar.set_description("clustering")
        clusters = cluster_video(model, processor, decoded)
        bar.update(1)
        bar.set_description("drawing")
        save_atomically(draw_clusters(clusters, title=label), out)
        bar.update(1)
    report = {
        "video": str(video),
        "out": str(out),
        "model": args.model,
        "model_label": label,
        "num_frames": int(clusters.frames.shape[0]),
        "grid": int(clusters.index_map.shape[1]),
        "num_clusters": clusters.num_clusters,
        "cluster_sizes": clusters.cluster_sizes,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"VQToken - {label}")
        print(
            f"wrote {out}: {report['num_frames']} frames of {report['grid']}x{report['grid']} patches, "
            f"K = {clusters.num_clusters} clusters of {min(clusters.cluster_sizes)}..{max(clusters.cluster_sizes)} "
            "tokens"
        )
    return 0
