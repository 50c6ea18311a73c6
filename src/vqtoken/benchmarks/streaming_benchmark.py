# Copyright 2026 The VQToken for Transformers authors. Licensed under the Apache License, Version 2.0.
"""
Streaming benchmark: long videos with the built-in default model, the incremental codebook at release size, the
distortion gap to offline K-means per chunk size, and what an answer costs while a video streams. One run, side by
side with the offline path.

Sections (`--sections`, all by default):

- `long`: a 1-minute and an `--hour-frames`-frame (1 hour at 1 frame/s) synthetic camera video (64 px, one scene a
  minute), each asked with `vqtoken ask VIDEO Q --fps 1` (streamed in 32-frame chunks) and, as the baseline, with the
  offline path on the same frames (`vqtoken ask VIDEO Q --frames N`, N = every frame: decoded, encoded and clustered
  at once). Each command runs in its own process (`OMP_NUM_THREADS=1`); its peak memory is that process's maximum
  resident set size (`os.wait4`), its time per frame the stream (or decode + preprocess + vision + clustering) time
  from the command's JSON report over the frames.
- `release`: the incremental codebook at release size (729 tokens x 896 per frame, K = 32, fixed selection) on
  synthetic tokens (see [`release_like_tokens`]): wall and CPU time of folding each 32-frame chunk (tower and
  projector excluded), and the cosine distortion of the streamed partition against offline K-means on all the tokens
  (`quantize_video_tokens`, same seed) at `--release-frames` frames, for chunks of 8, 32 and 128 frames (and 32
  frames cut into 4 K clusters instead of the default 2 K for so large a chunk: finer, dearer folds).
- `chunks`: the same gap with the built-in default model's real projected tokens of a synthetic camera video
  (`--chunk-video-frames` frames, one scene every 30), for chunks of 1 to 128 frames.
- `ask`: a stream of the built-in default model asked after every 32-frame chunk: the fold (tower, projector,
  codebook) and the answer (VQ-Attention, prefill of max(T, K) + 1 video tokens, one generated token), next to
  re-clustering every token seen offline, which a non-streaming system would need to answer.

The cosine distortion of a partition is the mean of `1 - cos(token, direction of its cluster's mean)` over the unit
tokens, `sum_k (n_k - |S_k|) / N`; the gap is `stream / offline - 1`, against offline K-means with the stream's seed
(0); the offline distortion with other seeds is printed beside it (K-means' own spread between local optima).

Usage:
    python -m vqtoken.benchmarks.streaming_benchmark [--sections long release chunks ask] [--hour-frames 3600]
        [--release-frames 1000] [--out-md FILE] [--out-json FILE] [--work-dir DIR]
"""

import argparse
import datetime
import json
import logging
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vqtoken.modeling.vqtoken_inference import video_pixels


logger = logging.getLogger(__name__)

QUESTION = "what colour is the shape ?"
SECTIONS = ("long", "release", "chunks", "ask")
RELEASE_GRID = 27
RELEASE_DIM = 896
RELEASE_CLUSTERS = 32


# ---------------------------------------------------------------------------------------------------------------------
# Synthetic release-size tokens
# ---------------------------------------------------------------------------------------------------------------------


def release_like_tokens(
    frame: int, seed: int = 0, scene_frames: int = 60, pool: int = 96, regions: int = 8, token_cosine: float = 0.8
) -> torch.Tensor:
    """
    The 729 x 896 tokens of frame `frame` of a synthetic video, deterministic per frame (no real model of that size is
    reachable here). A scene lasts `scene_frames` frames; it draws `regions` prototypes from a pool of `pool` unit
    directions (sharing a common component, so unrelated tokens have cosine ~0.3 as projected features do) and lays
    them out as moving blobs on the 27 x 27 patch grid (each patch takes its nearest blob centre, weighted); a token is
    its region's prototype plus isotropic noise with expected cosine `token_cosine` to it.

    Returns:
        `torch.FloatTensor` of shape `(729, 896)`.
    """
    generator = torch.Generator().manual_seed(seed)
    shared = torch.nn.functional.normalize(torch.randn(RELEASE_DIM, generator=generator), dim=0)
    prototypes = torch.nn.functional.normalize(torch.randn(pool, RELEASE_DIM, generator=generator), dim=-1)
    prototypes = torch.nn.functional.normalize(0.6 * shared + prototypes, dim=-1)
    scene = torch.Generator().manual_seed(seed * 7919 + frame // scene_frames + 1)
    chosen = torch.randperm(pool, generator=scene)[:regions]
    centres = torch.rand(regions, 2, generator=scene) * RELEASE_GRID
    velocities = (torch.rand(regions, 2, generator=scene) - 0.5) * 0.6
    sizes = 0.5 + 2.0 * torch.rand(regions, generator=scene)
    positions = (centres + velocities * (frame % scene_frames)) % RELEASE_GRID
    rows, columns = torch.meshgrid(torch.arange(RELEASE_GRID), torch.arange(RELEASE_GRID), indexing="ij")
    cells = torch.stack([rows, columns], dim=-1).reshape(-1, 2).float()
    region = (torch.cdist(cells, positions) / sizes[None]).argmin(dim=1)
    noise = torch.Generator().manual_seed(seed * 104729 + frame + 1)
    sigma = math.sqrt((1.0 - token_cosine**2) / token_cosine**2 / RELEASE_DIM)
    return prototypes[chosen[region]] + sigma * torch.randn(RELEASE_GRID**2, RELEASE_DIM, generator=noise)


def release_chunks(num_frames: int, chunk_frames: int):
    """Yields `(num, 729, 896)` chunks of [`release_like_tokens`]."""
    for start in range(0, num_frames, chunk_frames):
        frames = range(start, min(start + chunk_frames, num_frames))
        yield torch.stack([release_like_tokens(frame) for frame in frames])


def visible_distortion(codebook) -> float:
    """Cosine distortion of an [`IncrementalCodebook`]'s visible partition, exactly, from its micro-clusters."""
    from vqtoken.incremental_codebook import cosine_distortion

    num_clusters = codebook.num_clusters
    sums = torch.zeros(num_clusters, codebook.sums.shape[1], dtype=torch.float64)
    sums.index_add_(0, codebook.cluster_of_micro, codebook.sums)
    counts = torch.zeros(num_clusters, dtype=torch.float64).index_add_(
        0, codebook.cluster_of_micro, codebook.counts.double()
    )
    return cosine_distortion(sums, counts)


def offline_distortion(tokens: torch.Tensor, max_clusters: int, seed: int = 0) -> tuple[float, float]:
    """`(cosine distortion, seconds)` of offline `quantize_video_tokens` (fixed K) on `tokens` `(N, dim)`."""
    from vqtoken.incremental_codebook import cosine_distortion, unit_sums
    from vqtoken.modeling.vqtoken_kmeans import quantize_video_tokens

    start = time.perf_counter()
    quantization = quantize_video_tokens(tokens[None], max_clusters=max_clusters, seed=seed, backend="torch")
    seconds = time.perf_counter() - start
    norms = torch.linalg.vector_norm(tokens, dim=-1).clamp_min(1e-12)
    sums, counts = unit_sums(tokens, norms, quantization.index_maps[0], max_clusters)
    return cosine_distortion(sums[counts > 0], counts[counts > 0]), seconds


# ---------------------------------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------------------------------


def _run_measured(arguments: list[str]) -> dict:
    """
    Runs `python -m vqtoken ...` with one thread; returns its JSON report with its wall time, CPU time and peak
    resident set size in MiB (`os.wait4` on that child: its own maximum, not the benchmark's).
    """
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "vqtoken", *arguments], stdout=out, stderr=err, env=environment, text=True
        )
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    result = {"wall_s": wall, "peak_rss_mib": usage.ru_maxrss / 1024, "cpu_s": usage.ru_utime + usage.ru_stime}
    if process.returncode != 0:
        result["error"] = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit {process.returncode}"
        return result
    return {**json.loads(stdout), **result}


def section_long(work_dir: Path, hour_frames: int) -> dict:
    from vqtoken.synthetic import write_clip
    from vqtoken.synthetic_camera import camera_frames

    results = {}
    for label, num_frames in (("1 minute", 60), ("1 hour", hour_frames)):
        path = work_dir / f"camera_{num_frames}.mp4"
        if not path.exists():
            write_clip(path, np.concatenate(list(camera_frames(num_frames, window=256, seed=0))), fps=1)
        common = [str(path), QUESTION, "--json", "--quiet", "--max-new-tokens", "1"]
        streamed = _run_measured(["ask", *common, "--fps", "1"])
        if "error" not in streamed:
            streamed["seconds_per_frame"] = streamed["timings"]["stream"] / streamed["num_frames"]
        offline = _run_measured(["ask", *common, "--frames", str(num_frames)])
        if "error" not in offline:
            work = sum(offline["timings"][stage] for stage in ("decode", "preprocess", "vision", "clustering"))
            offline["seconds_per_frame"] = work / offline["num_frames"]
        results[label] = {"frames": num_frames, "stream": streamed, "offline": offline}
        logger.info("%s: stream %s, offline %s", label, streamed, offline)
    return results


def section_release(num_frames: int) -> dict:
    from vqtoken.incremental_codebook import CodebookSettings, IncrementalCodebook

    settings = CodebookSettings(
        tokens_per_frame=RELEASE_GRID**2, hidden_size=RELEASE_DIM, min_clusters=12, max_clusters=RELEASE_CLUSTERS
    )
    finer = CodebookSettings(**{**settings.to_dict(), "chunk_clusters": 4 * RELEASE_CLUSTERS})
    results = {"settings": settings.to_dict(), "frames": num_frames, "runs": {}}
    for label, chunk_frames, run_settings in (
        ("32", 32, settings),
        ("32, chunk_clusters 4K", 32, finer),
        ("8", 8, settings),
        ("128", 128, settings),
    ):
        if num_frames < 2 * chunk_frames:
            continue
        codebook = IncrementalCodebook(run_settings, backend="torch")
        wall, cpu = [], []
        for chunk in release_chunks(num_frames, chunk_frames):
            start, start_cpu = time.perf_counter(), time.process_time()
            codebook.fold(chunk)
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        later_wall, later_cpu = np.array(wall[1:]), np.array(cpu[1:])  # the first chunk is the offline clustering
        results["runs"][label] = {
            "chunk_frames": chunk_frames,
            "chunk_clusters": run_settings.clusters_for_chunk(chunk_frames * RELEASE_GRID**2 * RELEASE_DIM),
            "distortion": visible_distortion(codebook),
            "num_clusters": codebook.num_clusters,
            "fold_wall_median_s": float(np.median(later_wall)),
            "fold_wall_p90_s": float(np.percentile(later_wall, 90)),
            "fold_cpu_median_s": float(np.median(later_cpu)),
            "fold_cpu_p90_s": float(np.percentile(later_cpu, 90)),
            "first_chunk_wall_s": wall[0],
        }
        logger.info("release %s: %s", label, results["runs"][label])
    tokens = torch.cat([chunk.reshape(-1, RELEASE_DIM) for chunk in release_chunks(num_frames, 64)])
    results["offline_distortion"], results["offline_seconds"] = offline_distortion(tokens, RELEASE_CLUSTERS)
    results["offline_other_seeds"] = [offline_distortion(tokens, RELEASE_CLUSTERS, seed)[0] for seed in (1, 2)]
    del tokens
    for entry in results["runs"].values():
        entry["gap"] = entry["distortion"] / results["offline_distortion"] - 1
    return results


def _default_model_features(num_frames: int, scene_frames: int, seed: int):
    from vqtoken.loading import load_model_and_processor
    from vqtoken.synthetic_camera import camera_frames

    model, processor = load_model_and_processor(None)
    features = []
    for frames in camera_frames(num_frames, window=64, scene_frames=scene_frames, seed=seed):
        with torch.no_grad():
            features.append(model.model.get_frame_features(video_pixels(model, processor, frames))[0])
    return torch.cat(features), model


def section_chunks(num_frames: int) -> dict:
    from vqtoken.incremental_codebook import CodebookSettings, IncrementalCodebook

    features, model = _default_model_features(num_frames, scene_frames=30, seed=0)
    settings = CodebookSettings.from_config(model.config)
    tokens = features.reshape(-1, features.shape[-1])
    offline, offline_seconds = offline_distortion(tokens, settings.max_clusters)
    other_seeds = [offline_distortion(tokens, settings.max_clusters, seed)[0] for seed in (1, 2, 3, 4)]
    results = {
        "frames": num_frames,
        "settings": settings.to_dict(),
        "offline_distortion": offline,
        "offline_seconds": offline_seconds,
        "offline_other_seeds": other_seeds,
        "chunks": {},
    }
    for chunk_frames in (1, 4, 16, 32, 64, 128):
        codebook = IncrementalCodebook(settings, backend="torch")
        start = time.perf_counter()
        for first in range(0, num_frames, chunk_frames):
            codebook.fold(features[first : first + chunk_frames])
        distortion = visible_distortion(codebook)
        results["chunks"][chunk_frames] = {
            "distortion": distortion,
            "gap": distortion / offline - 1,
            "seconds": time.perf_counter() - start,
        }
        logger.info("default-model chunk %d: %s", chunk_frames, results["chunks"][chunk_frames])
    return results


def section_ask(num_chunks: int = 12, chunk_frames: int = 32) -> dict:
    from vqtoken.loading import load_model_and_processor
    from vqtoken.modeling.vqtoken_kmeans import quantize_video_tokens
    from vqtoken.streaming import VideoStream
    from vqtoken.synthetic_camera import camera_frames

    model, processor = load_model_and_processor(None)
    stream = VideoStream(model, processor)
    rows = []
    seen = []
    for frames in camera_frames(num_chunks * chunk_frames, window=chunk_frames, seed=1):
        start = time.perf_counter()
        stream.add_frames(frames)
        fold = time.perf_counter() - start
        start = time.perf_counter()
        answer = stream.ask(QUESTION, max_new_tokens=1)
        rows.append(
            {
                "frames": stream.num_frames,
                "K": stream.num_clusters,
                "fold_s": fold,
                "ask_s": time.perf_counter() - start,
                "visual_tokens": answer.visual_tokens,
                **answer.timings,
            }
        )
        with torch.no_grad():
            seen.append(model.model.get_frame_features(video_pixels(model, processor, frames))[0])
    tokens = torch.cat(seen).reshape(1, -1, seen[0].shape[-1])
    start = time.perf_counter()
    config = model.config
    quantize_video_tokens(
        tokens,
        max_clusters=config.vqtoken_max_clusters,
        seed=config.vqtoken_seed,
        max_iterations=config.vqtoken_max_iterations,
        tolerance=config.vqtoken_tolerance,
        backend="torch",
    )
    return {"rows": rows, "recluster_all_s": time.perf_counter() - start, "tokens_seen": tokens.shape[1]}


# ---------------------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------------------


def markdown(results: dict) -> str:
    lines = [f"Machine: {results['machine']}; date {results['date']}; load average at start {results['load']}."]
    if "long" in results:
        lines += [
            "",
            "| video | path | frames | K | peak RSS (MiB) | s / frame | wall (s) | answer |",
            "|---|---|---:|---:|---:|---:|---:|---|",
        ]
        for label, entry in results["long"].items():
            for path in ("stream", "offline"):
                run = entry[path]
                if "error" in run:
                    lines.append(
                        f"| {label} | {path} | {entry['frames']} | | {run.get('peak_rss_mib', 0):.0f} | | "
                        f"{run['wall_s']:.1f} | error: {run['error']} |"
                    )
                    continue
                lines.append(
                    f"| {label} | {path} | {run['num_frames']} | {run['num_clusters']} | "
                    f"{run['peak_rss_mib']:.0f} | {run['seconds_per_frame'] * 1e3:.2f} ms | "
                    f"{run['wall_s']:.1f} | {run['answer']!r} |"
                )
        minute = results["long"].get("1 minute", {}).get("stream")
        hour = results["long"].get("1 hour", {}).get("stream")
        if minute and hour and "error" not in minute and "error" not in hour:
            memory = hour["peak_rss_mib"] / minute["peak_rss_mib"]
            per_frame = hour["seconds_per_frame"] / minute["seconds_per_frame"]
            lines += ["", f"Stream, 1 hour / 1 minute: peak memory x{memory:.3f}, time per frame x{per_frame:.3f}."]
    if "release" in results:
        release = results["release"]
        lines += [
            "",
            f"Release size (729 x 896 tokens per frame, K = {RELEASE_CLUSTERS}), {release['frames']} "
            f"frames; offline K-means on all {release['frames'] * 729} tokens: distortion "
            f"{release['offline_distortion']:.5f} in {release['offline_seconds']:.0f} s (seeds 1, 2: "
            + ", ".join(f"{value:.5f}" for value in release["offline_other_seeds"])
            + ").",
            "",
            "| chunk (frames) | chunk clusters | fold wall median / p90 (s) | fold CPU median / p90 (s) | "
            "distortion | gap to offline |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for entry in release["runs"].values():
            lines.append(
                f"| {entry['chunk_frames']} | {entry['chunk_clusters']} | "
                f"{entry['fold_wall_median_s']:.3f} / {entry['fold_wall_p90_s']:.3f} | "
                f"{entry['fold_cpu_median_s']:.3f} / {entry['fold_cpu_p90_s']:.3f} | "
                f"{entry['distortion']:.5f} | {100 * entry['gap']:+.2f} % |"
            )
    if "chunks" in results:
        chunks = results["chunks"]
        lines += [
            "",
            f"Built-in default model, {chunks['frames']} frames (64 tokens x 128 each), K = "
            f"{chunks['settings']['max_clusters']}; offline K-means distortion "
            f"{chunks['offline_distortion']:.5f} (seeds 1-4: "
            + ", ".join(f"{value:.5f}" for value in chunks["offline_other_seeds"])
            + ").",
            "",
            "| chunk (frames) | distortion | gap to offline | stream time (s) |",
            "|---:|---:|---:|---:|",
        ]
        for chunk_frames, entry in sorted(chunks["chunks"].items(), key=lambda item: int(item[0])):
            lines.append(
                f"| {chunk_frames} | {entry['distortion']:.5f} | {100 * entry['gap']:+.2f} % | "
                f"{entry['seconds']:.1f} |"
            )
    if "ask" in results:
        ask = results["ask"]
        lines += [
            "",
            "| frames seen | K | fold 32 frames (s) | answer (s) | of which prefill (s) | video tokens |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for row in ask["rows"]:
            lines.append(
                f"| {row['frames']} | {row['K']} | {row['fold_s']:.3f} | {row['ask_s']:.3f} | "
                f"{row['prefill']:.3f} | {row['visual_tokens']} |"
            )
        lines += [
            "",
            f"Re-clustering all {ask['tokens_seen']} tokens seen offline instead: {ask['recluster_all_s']:.2f} s.",
        ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--hour-frames", type=int, default=3600)
    parser.add_argument("--release-frames", type=int, default=1000)
    parser.add_argument("--chunk-video-frames", type=int, default=1200)
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="where the videos are written (default: a temporary folder)"
    )
    parser.add_argument("--out-md", type=Path, default=None)
    parser.add_argument("--out-json", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, 1 thread",
        "date": datetime.date.today().isoformat(),
        "load": " ".join(f"{value:.1f}" for value in os.getloadavg()),
    }
    with tempfile.TemporaryDirectory() as scratch:
        work_dir = args.work_dir or Path(scratch)
        work_dir.mkdir(parents=True, exist_ok=True)
        if "long" in args.sections:
            results["long"] = section_long(work_dir, args.hour_frames)
        if "ask" in args.sections:
            results["ask"] = section_ask()
        if "chunks" in args.sections:
            results["chunks"] = section_chunks(args.chunk_video_frames)
        if "release" in args.sections:
            results["release"] = section_release(args.release_frames)
    results["load_end"] = " ".join(f"{value:.1f}" for value in os.getloadavg())
    report = markdown(results)
    print(report)
    if args.out_md:
        args.out_md.write_text(report + "\n")
    if args.out_json:
        args.out_json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
