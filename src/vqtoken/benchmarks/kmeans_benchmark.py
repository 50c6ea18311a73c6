# Copyright 2026 The VQToken for Transformers authors. Licensed under the Apache License, Version 2.0.
"""
Side-by-side timing of the cosine K-means step and of a whole fit.

Methods (each skipped with a note when it cannot run here):
- `ours-triton`: the Triton kernels (CUDA only; the interpreter is not a timing target), step = one iteration of
  the sync-free `lloyd(..., stop_early=False)`;
- `ours-torch`: the torch backend, step = one iteration of `lloyd` (as used by `quantize_video_tokens`);
- `fast-pytorch-kmeans` (cosine mode, fp32 only), `flash-kmeans` (`batch_kmeans_Cosine`, CUDA), `faiss`
  (spherical K-means; faiss-cpu runs on the CPU even in a GPU run).

"step ms" is the time of one Lloyd iteration for the whole batch (for libraries that only expose a fit: fit time
divided by the iteration count, so their initialisation is included); "fit ms" is initialisation plus `--iterations`
iterations (no early stop) for the whole batch. "x floor" is the step time over the memory floor: the time to read the
batch's tokens once at the measured copy bandwidth. "mean cos" is the mean cosine of each token to its cluster's mean
(a sanity check that the methods solve the same problem).

Usage:
    python -m vqtoken.benchmarks.kmeans_benchmark [--full] [--iterations 10] [--out table.md]
"""

import argparse
import datetime
import logging
import platform
import time

import torch

from vqtoken.modeling.vqtoken_kmeans import kmeans_plus_plus, lloyd, quantize_video_tokens
from vqtoken.modeling.vqtoken_kmeans_triton import is_triton_available


logger = logging.getLogger(__name__)

FULL_GRID = {"num_tokens": [6272, 23328], "dim": [896, 1152], "num_clusters": [12, 32, 64], "batch": [1, 8]}
CPU_GRID = {"num_tokens": [6272, 23328], "dim": [896], "num_clusters": [12, 32], "batch": [1]}


def _synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_time(function, device, repeats):
    """Best wall time of `repeats` calls (seconds), after one warm-up call done by the caller."""
    best = float("inf")
    for _ in range(repeats):
        _synchronize(device)
        start = time.perf_counter()
        function()
        _synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def copy_bandwidth(device, num_bytes=None, repeats=5):
    """Copy throughput in bytes/s, counting the bytes read plus the bytes written."""
    num_bytes = num_bytes or (1 << 30 if device.type == "cuda" else 1 << 28)
    source = torch.empty(num_bytes // 4, dtype=torch.float32, device=device).fill_(1.0)
    target = torch.empty_like(source)
    target.copy_(source)
    seconds = _best_time(lambda: target.copy_(source), device, repeats)
    return 2 * num_bytes / seconds


def mean_cosine(tokens, labels, num_clusters):
    """Mean cosine between every (unit) token and the mean of its cluster. tokens [B, N, D] fp32, labels [B, N]."""
    batch, _, dim = tokens.shape
    labels = labels.to(tokens.device).long()
    flat = labels + torch.arange(batch, device=tokens.device)[:, None] * num_clusters
    sums = tokens.new_zeros(batch * num_clusters, dim).index_add_(0, flat.reshape(-1), tokens.reshape(-1, dim))
    directions = torch.nn.functional.normalize(sums, dim=-1)
    return float((tokens.reshape(-1, dim) * directions[flat.reshape(-1)]).sum(-1).mean())


# ------------------------------------------------------------------------------------------------------------------
# methods: each returns (step_seconds, fit_seconds, mean_cos, note) or raises _Skip
# ------------------------------------------------------------------------------------------------------------------


class _Skip(Exception):
    pass


def _ours(backend, tokens, num_clusters, iterations, repeats):
    device = tokens.device
    if backend == "triton" and (device.type != "cuda" or not is_triton_available()):
        raise _Skip("needs triton and a CUDA device")
    note = ""
    if backend == "torch" and tokens.dtype != torch.float32:
        tokens = tokens.float()
        note = "fp32 (torch step takes fp32)"
    unit = torch.nn.functional.normalize(tokens.float(), dim=-1).to(tokens.dtype)
    init = kmeans_plus_plus(unit.float(), num_clusters, seed=0)
    mask = torch.ones(init.shape[:2], dtype=torch.bool, device=device)

    if backend == "triton":

        def steps(count):
            return lloyd(unit, init, mask, count, -1.0, "triton", stop_early=False)

    else:

        def steps(count):
            return lloyd(unit, init, mask, count, -1.0, "torch")

    def fit(count):
        return quantize_video_tokens(
            tokens, selection_method="fixed", max_clusters=num_clusters, min_clusters=num_clusters,
            max_iterations=count, tolerance=-1.0, backend=backend,
        )

    steps(1)
    step = _best_time(lambda: steps(iterations), device, repeats) / iterations
    fit(1)
    fit_seconds = _best_time(lambda: fit(iterations), device, repeats)
    result = fit(iterations)
    if backend == "triton" and tokens.dtype != torch.float32:
        note = "step on bf16 tokens; fit upcasts to fp32 (quantize_video_tokens)"
    return step, fit_seconds, mean_cosine(unit.float(), result.index_maps, num_clusters), note


def _fast_pytorch_kmeans(tokens, num_clusters, iterations, repeats):
    try:
        from fast_pytorch_kmeans import KMeans
    except ImportError:
        raise _Skip("not installed")
    unit = torch.nn.functional.normalize(tokens.float(), dim=-1)

    def fit(count):
        labels = []
        for video in unit:
            model = KMeans(n_clusters=num_clusters, max_iter=count, tol=-1.0, mode="cosine", verbose=0)
            labels.append(model.fit_predict(video))
        return torch.stack(labels)

    fit(1)
    seconds = _best_time(lambda: fit(iterations), tokens.device, repeats)
    note = "fp32 (no bf16); random init; one video at a time"
    return seconds / iterations, seconds, mean_cosine(unit, fit(iterations), num_clusters), note


def _flash_kmeans(tokens, num_clusters, iterations, repeats):
    if tokens.device.type != "cuda":
        raise _Skip("needs CUDA")
    try:
        from flash_kmeans import batch_kmeans_Cosine
    except ImportError:
        raise _Skip("not installed")
    if batch_kmeans_Cosine is None:
        raise _Skip("triton part not importable")
    unit = torch.nn.functional.normalize(tokens.float(), dim=-1).to(tokens.dtype)

    def fit(count):
        return batch_kmeans_Cosine(unit, n_clusters=num_clusters, max_iters=count, tol=0.0)

    fit(1)
    seconds = _best_time(lambda: fit(iterations), tokens.device, repeats)
    labels = fit(iterations)[0]
    note = "tol=0 (may stop early if centres stop moving)"
    return seconds / iterations, seconds, mean_cosine(unit.float(), labels, num_clusters), note


def _faiss(tokens, num_clusters, iterations, repeats):
    try:
        import faiss
    except ImportError:
        raise _Skip("not installed")
    unit = torch.nn.functional.normalize(tokens.float(), dim=-1).cpu()
    arrays = [video.numpy() for video in unit]
    num_tokens, dim = unit.shape[1:]

    def fit(count):
        labels = []
        for array in arrays:
            kmeans = faiss.Kmeans(
                dim, num_clusters, niter=count, seed=1, spherical=True, verbose=False,
                max_points_per_centroid=num_tokens + 1, min_points_per_centroid=1,
            )
            kmeans.train(array)
            labels.append(torch.from_numpy(kmeans.index.search(array, 1)[1][:, 0]))
        return torch.stack(labels)

    fit(1)
    seconds = _best_time(lambda: fit(iterations), torch.device("cpu"), repeats)
    note = "CPU, fp32, spherical; one video at a time"
    return seconds / iterations, seconds, mean_cosine(unit, fit(iterations), num_clusters), note


METHODS = {
    "ours-triton": lambda *args: _ours("triton", *args),
    "ours-torch": lambda *args: _ours("torch", *args),
    "fast-pytorch-kmeans": _fast_pytorch_kmeans,
    "flash-kmeans": _flash_kmeans,
    "faiss": _faiss,
}


def run(grid, device, dtype, iterations, repeats, methods):
    """Returns (header lines, table rows)."""
    bandwidth = copy_bandwidth(device)
    header = [
        f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor() or 'cpu'}"
        f" ({device.type}, {torch.get_num_threads()} torch threads)",
        f"torch {torch.__version__}; date {datetime.date.today().isoformat()}; {iterations} iterations, "
        f"best of {repeats}; tokens {str(dtype).replace('torch.', '')}",
        f"copy bandwidth (read + write): {bandwidth / 1e9:.1f} GB/s",
    ]
    rows = []
    generator = torch.Generator().manual_seed(0)
    # the first calls of a process are slow (thread pools, allocator, compilation): warm every method up once
    warm_tokens = torch.randn(1, 256, 64, generator=generator).to(device=device, dtype=dtype)
    for name in methods:
        try:
            METHODS[name](warm_tokens, 8, 2, 1)
        except _Skip:
            pass
    for num_tokens in grid["num_tokens"]:
        for dim in grid["dim"]:
            for batch in grid["batch"]:
                tokens = torch.randn(batch, num_tokens, dim, generator=generator).to(device=device, dtype=dtype)
                for num_clusters in grid["num_clusters"]:
                    for name in methods:
                        config = f"N={num_tokens} D={dim} K={num_clusters} B={batch}"
                        try:
                            step, fit, quality, note = METHODS[name](tokens, num_clusters, iterations, repeats)
                        except _Skip as skip:
                            rows.append([config, name, "-", "-", "-", "-", f"skipped: {skip}"])
                            continue
                        read_dtype = dtype if name in ("ours-triton", "flash-kmeans") else torch.float32
                        element_bytes = torch.empty((), dtype=read_dtype).element_size()
                        floor = batch * num_tokens * dim * element_bytes / bandwidth
                        rows.append(
                            [config, name, f"{step * 1e3:.2f}", f"{fit * 1e3:.1f}", f"{step / floor:.1f}",
                             f"{quality:.4f}", note]
                        )
                        logger.info("%s %s step %.2f ms", config, name, step * 1e3)
    return header, rows


def to_markdown(header, rows):
    lines = [f"- {line}" for line in header] + [""]
    columns = ["config", "method", "step ms", "fit ms", "x floor", "mean cos", "note"]
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--full", action="store_true", help="the whole grid on the CPU too")
    parser.add_argument("--iterations", type=int, default=None, help="Lloyd iterations (default 20 GPU, 5 CPU)")
    parser.add_argument("--repeats", type=int, default=None, help="best of (default 5 GPU, 3 CPU)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--out", help="also write the markdown table to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    grid = FULL_GRID if (on_gpu or args.full) else CPU_GRID
    dtype = torch.bfloat16 if on_gpu else torch.float32
    iterations = args.iterations or (20 if on_gpu else 5)
    repeats = args.repeats or (5 if on_gpu else 3)
    header, rows = run(grid, device, dtype, iterations, repeats, args.methods)
    table = to_markdown(header, rows)
    print(table)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(table)


if __name__ == "__main__":
    main()
