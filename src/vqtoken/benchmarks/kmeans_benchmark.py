# Copyright 2026 The VQToken for Transformers authors. Licensed under the Apache License, Version 2.0.
"""
Side-by-side timing of the cosine K-means step and of a whole fit.

Methods (each skipped with a note when it cannot run here):
- `ours-triton`: the Triton kernels (CUDA; on the CPU only under `TRITON_INTERPRET=1`, which checks that the benchmark
  runs and times nothing of value), step = one iteration of the sync-free `lloyd(..., stop_early=False)`;
- `ours-torch`: the torch backend, step = one iteration of `lloyd` (as used by `quantize_video_tokens`);
- `fast-pytorch-kmeans` (cosine mode, fp32 only), `flash-kmeans` (`batch_kmeans_Cosine`, CUDA), `faiss`
  (spherical K-means; faiss-cpu runs on the CPU even in a GPU run).

"step ms" is the time of one Lloyd iteration for the whole batch (for libraries that only expose a fit: fit time
divided by the iteration count, so their initialisation is included); "fit ms" is initialisation plus `--iterations`
iterations (no early stop) for the whole batch. "x floor" is the step time over the memory floor: the time to read the
batch's tokens once at the measured copy bandwidth. "kernel us" is one assignment-and-update step alone (ours: the
assign-and-accumulate call; flash-kmeans: its `_cosine_iter`, assignment + centroid update), on CUDA the median of
`triton.testing.do_bench` (CUDA events, L2 flushed between runs), and "kernel x floor" its multiple of the floor.
"mean cos" is the mean cosine of each token to its cluster's mean (a sanity check that the methods solve the same
problem).

flash-kmeans autotunes its assignment kernel for D > 512 over 162 configurations per (N, K, D), minutes per shape; here
its autotuner chooses between two: flash-kmeans' own H100/H200 heuristic configuration for the shape, and the same
with BLOCK_K cut to the smallest tile (>= 32) that holds K (its tables were tuned for K >= 256).

Usage:
    python -m vqtoken.benchmarks.kmeans_benchmark [--full | --tiny] [--dtype bfloat16] [--iterations 10]
        [--out table.md] [--out-json table.json]
"""

import argparse
import datetime
import json
import logging
import os
import platform
import time
from pathlib import Path

import torch

from vqtoken.files import write_atomically
from vqtoken.modeling.vqtoken_kmeans import (
    assign_and_accumulate_torch,
    kmeans_plus_plus,
    lloyd,
    quantize_video_tokens,
)
from vqtoken.modeling.vqtoken_kmeans_triton import is_triton_available, triton_assign_and_accumulate


logger = logging.getLogger(__name__)

FULL_GRID = {"num_tokens": [6272, 23328], "dim": [896, 1152], "num_clusters": [12, 32, 64], "batch": [1, 8]}
CPU_GRID = {"num_tokens": [6272, 23328], "dim": [896], "num_clusters": [12, 32], "batch": [1]}
TINY_GRID = {"num_tokens": [200], "dim": [96], "num_clusters": [12], "batch": [1, 2]}
COLUMNS = ["config", "method", "step ms", "fit ms", "x floor", "kernel us", "kernel x floor", "mean cos", "note"]


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


def _fit_only_row(
    fit, iterations: int, device, repeats: int, unit: torch.Tensor, num_clusters: int, note: str
) -> dict:
    """The row of a peer that only exposes a whole fit: warmed up once, its best fit time over the iterations."""
    fit(1)
    seconds = _best_time(lambda: fit(iterations), device, repeats)
    return {
        "step_s": seconds / iterations,
        "fit_s": seconds,
        "kernel_s": None,
        "mean_cos": mean_cosine(unit, fit(iterations), num_clusters),
        "note": note,
    }


def _kernel_time(function, device, repeats):
    """Seconds of one call: on CUDA the median of `triton.testing.do_bench` (events, L2 flushed), else best wall."""
    function()
    if device.type == "cuda":
        import triton.testing

        return triton.testing.do_bench(function, warmup=5, rep=25, return_mode="median") / 1e3
    return _best_time(function, device, repeats)


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
# methods: each returns a dict (step_s, fit_s, kernel_s or None, mean_cos, note) or raises _Skip
# ------------------------------------------------------------------------------------------------------------------


class _Skip(Exception):
    pass


def _interpreting():
    return os.environ.get("TRITON_INTERPRET") == "1"


def _ours(backend, tokens, num_clusters, iterations, repeats):
    device = tokens.device
    if backend == "triton" and not is_triton_available():
        raise _Skip("needs triton")
    if backend == "triton" and device.type != "cuda" and not _interpreting():
        raise _Skip("needs a CUDA device (or TRITON_INTERPRET=1 to check that it runs)")
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

        def kernel():
            return triton_assign_and_accumulate(unit, init, mask)

    else:

        def steps(count):
            return lloyd(unit, init, mask, count, -1.0, "torch")

        def kernel():
            return assign_and_accumulate_torch(unit, init, mask)

    def fit(count):
        return quantize_video_tokens(
            tokens,
            selection_method="fixed",
            max_clusters=num_clusters,
            min_clusters=num_clusters,
            max_iterations=count,
            tolerance=-1.0,
            backend=backend,
        )

    steps(1)
    step = _best_time(lambda: steps(iterations), device, repeats) / iterations
    kernel_seconds = _kernel_time(kernel, device, repeats)
    fit(1)
    fit_seconds = _best_time(lambda: fit(iterations), device, repeats)
    result = fit(iterations)
    if backend == "triton" and tokens.dtype != torch.float32:
        note = "step on bf16 tokens; fit upcasts to fp32 (quantize_video_tokens)"
    if backend == "triton" and device.type != "cuda":
        note = "Triton interpreter: checks that it runs, not a timing"
    return {
        "step_s": step,
        "fit_s": fit_seconds,
        "kernel_s": kernel_seconds,
        "mean_cos": mean_cosine(unit.float(), result.index_maps, num_clusters),
        "note": note,
    }


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

    return _fit_only_row(
        fit, iterations, tokens.device, repeats, unit, num_clusters, "fp32 (no bf16); random init; one video at a time"
    )


def _restrict_flash_kmeans_autotune(unit, num_clusters):
    """
    Narrows the autotuner of flash-kmeans' split-D cosine assignment kernel (used for D > 512) to two configurations:
    its own heuristic one for this shape, and the same with BLOCK_K cut to the smallest tile (>= 32) holding K.
    Returns the configurations as dicts (empty when the shape takes flash-kmeans' small-D path, which does not
    autotune).
    """
    import triton
    from flash_kmeans import assign_euclid_triton as assign

    _, num_tokens, dim = unit.shape
    if not assign._need_split_d(dim, unit.dtype, unit.device):
        return []
    base = assign._heuristic_euclid_config_split_d(num_tokens, num_clusters, dim, device=unit.device, dtype=unit.dtype)
    narrow = dict(base, BLOCK_K=min(base["BLOCK_K"], max(32, 1 << (num_clusters - 1).bit_length())))
    choices = [base] if narrow == base else [base, narrow]
    assign._cosine_assign_kernel_split_d_autotuned.configs = [
        triton.Config(
            {name: choice[name] for name in ("BLOCK_N", "BLOCK_K", "BLOCK_D")},
            num_warps=choice["num_warps"],
            num_stages=choice["num_stages"],
        )
        for choice in choices
    ]
    return choices


def _flash_kmeans(tokens, num_clusters, iterations, repeats):
    if tokens.device.type != "cuda":
        raise _Skip("needs CUDA")
    try:
        from flash_kmeans import kmeans_triton_impl
    except ImportError as error:
        raise _Skip(f"not installed, or its Triton part does not import ({error})")
    unit = torch.nn.functional.normalize(tokens.float(), dim=-1).to(tokens.dtype)
    choices = _restrict_flash_kmeans_autotune(unit, num_clusters)

    def fit(count):
        return kmeans_triton_impl.batch_kmeans_Cosine(unit, n_clusters=num_clusters, max_iters=count, tol=0.0)

    fit(1)
    seconds = _best_time(lambda: fit(iterations), tokens.device, repeats)
    labels = fit(iterations)[0]
    centroids = torch.nn.functional.normalize(unit[:, :num_clusters].float(), dim=-1).to(unit.dtype)
    kernel_seconds = _kernel_time(lambda: kmeans_triton_impl._cosine_iter(unit, centroids), tokens.device, repeats)
    tiles = (
        "; autotuned over "
        + " / ".join(
            f"BN{c['BLOCK_N']} BK{c['BLOCK_K']} BD{c['BLOCK_D']} w{c['num_warps']} s{c['num_stages']}" for c in choices
        )
        if choices
        else ""
    )
    note = f"tol=0 (never stops early); random init{tiles}"
    return {
        "step_s": seconds / iterations,
        "fit_s": seconds,
        "kernel_s": kernel_seconds,
        "mean_cos": mean_cosine(unit.float(), labels, num_clusters),
        "note": note,
    }


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
                dim,
                num_clusters,
                niter=count,
                seed=1,
                spherical=True,
                verbose=False,
                max_points_per_centroid=num_tokens + 1,
                min_points_per_centroid=1,
            )
            kmeans.train(array)
            labels.append(torch.from_numpy(kmeans.index.search(array, 1)[1][:, 0]))
        return torch.stack(labels)

    return _fit_only_row(
        fit, iterations, torch.device("cpu"), repeats, unit, num_clusters, "CPU, fp32, spherical; one video at a time"
    )


METHODS = {
    "ours-triton": lambda *args: _ours("triton", *args),
    "ours-torch": lambda *args: _ours("torch", *args),
    "fast-pytorch-kmeans": _fast_pytorch_kmeans,
    "flash-kmeans": _flash_kmeans,
    "faiss": _faiss,
}


def describe_setup(device, dtype, iterations, repeats, bandwidth):
    """The set-up of a run, as recorded next to its rows."""
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "device_type": device.type,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "triton": triton_version,
        "triton_interpreter": _interpreting(),
        "date": datetime.date.today().isoformat(),
        "iterations": iterations,
        "repeats": repeats,
        "dtype": str(dtype).replace("torch.", ""),
        "copy_bandwidth_bytes_per_s": bandwidth,
    }


def run(grid, device, dtype, iterations, repeats, methods, on_row=None):
    """Returns (set-up, rows); `on_row(setup, rows)` is called after every row (to save partial results)."""
    setup = describe_setup(device, dtype, iterations, repeats, copy_bandwidth(device))
    rows = []
    generator = torch.Generator().manual_seed(0)
    # the first calls of a process are slow (thread pools, allocator, compilation): warm every method up once
    warm_tokens = torch.randn(1, 256, 64, generator=generator).to(device=device, dtype=dtype)
    for name in methods:
        try:
            METHODS[name](warm_tokens, 8, 2, 1)
        except _Skip:
            pass
        except Exception:  # reported again on the first real row
            logger.exception("warm-up of %s failed", name)
    for num_tokens in grid["num_tokens"]:
        for dim in grid["dim"]:
            for batch in grid["batch"]:
                tokens = torch.randn(batch, num_tokens, dim, generator=generator).to(device=device, dtype=dtype)
                for num_clusters in grid["num_clusters"]:
                    for name in methods:
                        rows.append(_measure(name, tokens, num_clusters, iterations, repeats, setup))
                        if on_row is not None:
                            on_row(setup, rows)
    return setup, rows


def _measure(name, tokens, num_clusters, iterations, repeats, setup):
    batch, num_tokens, dim = tokens.shape
    row = {"num_tokens": num_tokens, "dim": dim, "num_clusters": num_clusters, "batch": batch, "method": name}
    try:
        measured = METHODS[name](tokens, num_clusters, iterations, repeats)
    except _Skip as skip:
        return dict(row, status="skipped", note=f"skipped: {skip}")
    except Exception as error:  # one method failing (e.g. a peer's kernel on this card) must not end the run
        logger.exception("%s failed at N=%d D=%d K=%d B=%d", name, num_tokens, dim, num_clusters, batch)
        return dict(row, status="error", note=f"error: {type(error).__name__}: {error}"[:300])
    read_dtype = tokens.dtype if name in ("ours-triton", "flash-kmeans") else torch.float32
    floor = batch * num_tokens * dim * torch.empty((), dtype=read_dtype).element_size()
    floor /= setup["copy_bandwidth_bytes_per_s"]
    kernel = measured["kernel_s"]
    logger.info(
        "N=%d D=%d K=%d B=%d %s step %.3f ms", num_tokens, dim, num_clusters, batch, name, measured["step_s"] * 1e3
    )
    return dict(
        row,
        status="ok",
        step_ms=measured["step_s"] * 1e3,
        fit_ms=measured["fit_s"] * 1e3,
        x_floor=measured["step_s"] / floor,
        kernel_us=None if kernel is None else kernel * 1e6,
        kernel_x_floor=None if kernel is None else kernel / floor,
        floor_us=floor * 1e6,
        mean_cos=measured["mean_cos"],
        note=measured["note"],
    )


def _cell(value, digits):
    return "-" if value is None else f"{value:.{digits}f}"


def to_markdown(setup, rows):
    lines = [
        f"- device: {setup['device']} ({setup['device_type']}, {setup['torch_threads']} torch threads)",
        f"- torch {setup['torch']}, triton {setup['triton']}; date {setup['date']}; {setup['iterations']} iterations, "
        f"best of {setup['repeats']}; tokens {setup['dtype']}",
        f"- copy bandwidth (read + write): {setup['copy_bandwidth_bytes_per_s'] / 1e9:.1f} GB/s",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    for row in rows:
        config = f"N={row['num_tokens']} D={row['dim']} K={row['num_clusters']} B={row['batch']}"
        cells = [
            config,
            row["method"],
            _cell(row.get("step_ms"), 3),
            _cell(row.get("fit_ms"), 1),
            _cell(row.get("x_floor"), 1),
            _cell(row.get("kernel_us"), 1),
            _cell(row.get("kernel_x_floor"), 2),
            _cell(row.get("mean_cos"), 4),
            row["note"],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    grids = parser.add_mutually_exclusive_group()
    grids.add_argument("--full", action="store_true", help="the whole grid on the CPU too")
    grids.add_argument("--tiny", action="store_true", help="one tiny shape: checks that the benchmark runs")
    parser.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        default=None,
        help="token dtype (default bfloat16 on CUDA, float32 on the CPU)",
    )
    parser.add_argument("--iterations", type=int, default=None, help="Lloyd iterations (default 20 GPU, 5 CPU)")
    parser.add_argument("--repeats", type=int, default=None, help="best of (default 5 GPU, 3 CPU)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--out", type=Path, help="also write the markdown table to this file")
    parser.add_argument("--out-json", type=Path, help="also write the set-up and rows as JSON (after every row)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    grid = TINY_GRID if args.tiny else FULL_GRID if (on_gpu or args.full) else CPU_GRID
    dtype = getattr(torch, args.dtype) if args.dtype else torch.bfloat16 if on_gpu else torch.float32
    iterations = args.iterations or (20 if on_gpu else 5)
    repeats = args.repeats or (5 if on_gpu else 3)

    def save(setup, rows):
        if args.out:
            write_atomically(args.out, lambda stream: stream.write(to_markdown(setup, rows).encode()))
        if args.out_json:
            data = json.dumps({"setup": setup, "rows": rows}, indent=1).encode()
            write_atomically(args.out_json, lambda stream: stream.write(data))

    setup, rows = run(grid, device, dtype, iterations, repeats, args.methods, on_row=save)
    save(setup, rows)
    print(to_markdown(setup, rows))
    return 1 if any(row["status"] == "error" for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
