"""
Time to cluster one video of real size with adaptive K: this project's K-means next to the released procedure.

The released procedure is rewritten here from its description (../shared/UPSTREAM.md, "Video path", steps 4-5) as the
baseline: for every K in 12..32 a fresh k-means++ initialisation and a Lloyd loop whose update walks the clusters in
Python, the distortion of each fit, the elbow rule, then one more fit from scratch at the chosen K. Both run on the
same tokens, in fp32 on the CPU by default, one after the other in one process.

    python -m vqtoken.benchmarks.clustering_vs_released --frames 32 --threads 2

On a GPU, the whole selection of one video as a request runs it (the model hands bf16 tokens over):

    python -m vqtoken.benchmarks.clustering_vs_released --device cuda --dtype bfloat16 --backends triton torch \
        --skip-released --repeats 10

The tokens are synthetic but shaped like projected video tokens: 32 frames x 729 positions x 896, drawn around a few
dozen directions that persist from frame to frame, plus noise; pass `--random` for structureless Gaussian tokens.
"""

import argparse
import datetime
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from ..files import write_atomically
from ..modeling.vqtoken_kmeans import choose_num_clusters_elbow, quantize_video_tokens


METHODS = ("fixed", "elbow", "elbow_corrected", "silhouette")


def video_like_tokens(
    num_frames: int, tokens_per_frame: int, dim: int, num_directions: int, seed: int
) -> torch.Tensor:
    """Tokens `(num_frames * tokens_per_frame, dim)`: each position keeps its direction across frames, plus noise."""
    generator = torch.Generator().manual_seed(seed)
    directions = torch.randn(num_directions, dim, generator=generator)
    layout = torch.randint(0, num_directions, (tokens_per_frame,), generator=generator)
    frames = []
    for _ in range(num_frames):
        moved = torch.where(
            torch.rand(tokens_per_frame, generator=generator) < 0.1,
            torch.randint(0, num_directions, (tokens_per_frame,), generator=generator),
            layout,
        )
        frames.append(directions[moved] + 0.8 * torch.randn(tokens_per_frame, dim, generator=generator))
    return 3.0 * torch.cat(frames)


def released_fit(tokens: torch.Tensor, num_clusters: int, max_iterations: int = 100, tolerance: float = 1e-4):
    """One released-style fit: k-means++ (unseeded as released, seeded here to repeat runs), Python-loop update."""
    num_tokens = tokens.shape[0]
    first = int(torch.randint(0, num_tokens, (1,)))
    centroids = [tokens[first]]
    for _ in range(1, num_clusters):
        stacked = torch.stack(centroids)
        sq_distance = torch.cdist(tokens, stacked).square().min(dim=1).values
        probabilities = (sq_distance + 1e-6) / (sq_distance + 1e-6).sum()
        centroids.append(tokens[int(torch.multinomial(probabilities, 1))])
    centroids = torch.stack(centroids)
    for _ in range(max_iterations):
        labels = (tokens @ centroids.T).argmax(dim=1)
        new_centroids = centroids.clone()
        for cluster in range(num_clusters):
            members = tokens[labels == cluster]
            if len(members) > 0:
                new_centroids[cluster] = members.mean(dim=0)
        shift = float(torch.linalg.norm(new_centroids - centroids))
        centroids = new_centroids
        if shift < tolerance:
            break
    distortion = float(((tokens - centroids[labels]) ** 2).sum())
    return labels, centroids, distortion


def released_adaptive(tokens: torch.Tensor, min_clusters: int = 12, max_clusters: int = 32):
    """The released elbow selection: one fit per candidate, the rule, then a fresh fit at the chosen K."""
    tokens = torch.nn.functional.normalize(tokens.float(), dim=-1)
    candidates = list(range(min_clusters, max_clusters + 1))
    distortions = torch.tensor([released_fit(tokens, k)[2] for k in candidates], dtype=torch.float64)
    chosen = choose_num_clusters_elbow(distortions, candidates, corrected=False)
    labels, _, _ = released_fit(tokens, chosen)
    return chosen, labels


def time_call(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def time_selection(tokens: torch.Tensor, method: str, backend: str, repeats: int) -> dict:
    """
    Times `quantize_video_tokens` on one video (`tokens` of shape `(num_tokens, dim)`) as a whole: `repeats` calls,
    each ended by a device synchronisation; on CUDA after one untimed call (kernel compilation, library set-up).
    """

    def call():
        result = quantize_video_tokens(tokens[None], selection_method=method, backend=backend)
        if tokens.device.type == "cuda":
            torch.cuda.synchronize(tokens.device)
        return result

    if tokens.device.type == "cuda":
        call()
    times = []
    for _ in range(repeats):
        seconds, result = time_call(call)
        times.append(seconds)
    return {
        "path": f"ours, {method}",
        "backend": backend,
        "seconds": min(times),
        "median_seconds": statistics.median(times),
        "k": int(result.num_clusters[0]),
    }


def to_markdown(header: str, rows: list[dict]) -> str:
    lines = [header, "", "| path | backend | best ms | median ms | K |", "| --- | --- | ---: | ---: | ---: |"]
    lines += [
        f"| {row['path']} | {row['backend']} | {row['seconds'] * 1e3:.3f} | {row['median_seconds'] * 1e3:.3f} "
        f"| {row['k']} |"
        for row in rows
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--tokens-per-frame", type=int, default=729)
    parser.add_argument("--dim", type=int, default=896)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="repetitions of our path (the released one runs once)")
    parser.add_argument("--random", action="store_true", help="structureless Gaussian tokens")
    parser.add_argument("--skip-released", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "bfloat16", "float16"),
        help="dtype of the tokens handed to the clustering (the model's; it computes in fp32)",
    )
    parser.add_argument("--backends", nargs="+", default=["torch"], choices=("torch", "triton"))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--out-json", type=Path, help="the rows and the set-up as JSON (rewritten after every row)")
    parser.add_argument("--out-md", type=Path, help="the table as Markdown")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.random:
        tokens = torch.randn(args.frames * args.tokens_per_frame, args.dim)
    else:
        tokens = video_like_tokens(args.frames, args.tokens_per_frame, args.dim, num_directions=40, seed=0)
    tokens = tokens.to(args.device, getattr(torch, args.dtype))
    device_name = (
        torch.cuda.get_device_name(tokens.device)
        if tokens.device.type == "cuda"
        else (platform.processor() or platform.machine())
    )
    header = (
        f"tokens: {tuple(tokens.shape)} {args.dtype}, {'random' if args.random else 'video-like'}, on "
        f"{device_name}; torch threads: {args.threads}; torch {torch.__version__}; "
        f"{datetime.date.today().isoformat()}"
    )
    setup = {
        "num_tokens": tokens.shape[0],
        "dim": tokens.shape[1],
        "dtype": args.dtype,
        "device": device_name,
        "random": args.random,
    }
    rows = []

    def record(row):
        rows.append(row)
        if args.out_json:
            data = json.dumps({"header": header, "setup": setup, "rows": rows}, indent=1).encode()
            write_atomically(args.out_json, lambda stream: stream.write(data))

    for backend in args.backends:
        for method in args.methods:
            record(time_selection(tokens, method, backend, args.repeats))
    if not args.skip_released:
        seconds, (chosen, _) = time_call(released_adaptive, tokens.float())
        record(
            {
                "path": "released procedure, elbow (21 fits + refit)",
                "backend": "torch",
                "seconds": seconds,
                "median_seconds": seconds,
                "k": chosen,
            }
        )

    table = to_markdown(header, rows)
    print(table)
    print(json.dumps(rows))
    if args.out_md:
        args.out_md.write_text(table)


if __name__ == "__main__":
    main()
