# Copyright 2026 The VQToken for Transformers authors. Licensed under the Apache License, Version 2.0.
"""
End-to-end benchmark: one video, one question, on the LLaVA-OneVision-0.5B architecture, four ways side by side.

- `stock`: stock OneVision (196 tokens per frame + newline): the VQToken model in mode `"off"`, which is stock
  `LlavaOnevisionForConditionalGeneration` bit for bit (tests/test_modeling.py);
- `vqtoken`: VQToken as released (no pooling: T x 729 tokens clustered, adaptive elbow K in 12..32, VQ-Attention);
- `vqtoken-pool`: the same after the stock 2x2 pooling (T x 196 tokens clustered);
- `cached`: asking from the `.vqt` file the `vqtoken` run wrote (no decoding, vision tower or clustering).

The model is built from a configuration written here (SigLIP so400m 384/14 with 26 layers; Qwen2-0.5B) with random
weights: speed does not depend on weight values (`--size tiny` shrinks both towers to 2 narrow layers, to check that
the benchmark runs, not to time anything). Every variant asks through the code users run
(`vqtoken.inference.answer_prompts`, or `answer_prompts_from_codebooks` from the cache), so the stages below are that
code's own timings; the prompt is the chat template of the tiny offline tokenizer (its ids fit the 0.5B vocabulary;
the text does not matter for speed). Each variant runs in a fresh subprocess so that its peak memory
(`ru_maxrss`) is its own. The language model is warmed up (a short generate) before timing. On CUDA the whole video
path is also run once before the timed run (kernel compilation and library set-up are not part of a request); on the
CPU it is not (one repetition of a 32-frame clip already takes minutes on 2 cores).

Stages: decode (PyAV, a synthetic mp4 from `vqtoken.synthetic`; where PyAV is missing, the same clip saved as a `.npy`
frame array, and "decode" is reading it and sampling the frames), preprocess (video processor), vision (tower +
projector [+ pooling]), clustering (K-means + VQ-Attention), load (`.vqt` read and validation), tokens (VQ-Attention
over the cached codebook), prefill (to the first generated token), then decoding of 16 tokens (`min_new_tokens`).
TTFT = every stage up to the first token. KV cache: bytes per cached position (keys and values of every layer, in the
model's dtype) times the prompt length (whole prompt) or the video's token count (per video).

Usage:
    python -m vqtoken.benchmarks.end_to_end [--frames 8 32] [--dtype float32] [--out-md table.md] [--out-png plot.png]
"""

import argparse
import datetime
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vqtoken.files import write_atomically


VARIANTS = ("stock", "vqtoken", "vqtoken-pool", "cached")
VARIANT_LABELS = {
    "stock": "stock OneVision (196/frame)",
    "vqtoken": "VQToken released (729/frame, elbow K, attention)",
    "vqtoken-pool": "VQToken + 2x2 pool (196/frame)",
    "cached": "VQToken from .vqt cache",
}
STAGES = ("decode", "preprocess", "vision", "clustering", "load", "tokens", "prefill")
QUESTION = "describe what happens in this video : who moves , which way , and what colour are the objects ?"
NEW_TOKENS = 16
# `--size tiny`: the 0.5B configuration with 2 narrow layers per tower (same image size, patches and vocabulary)
TINY_VISION = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4}
TINY_TEXT = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}


def onevision_config(variant: str, tokenizer, size: str = "0.5b"):
    """
    The LLaVA-OneVision-0.5B architecture (`llava-onevision-qwen2-0.5b-ov`), with VQToken settings for `variant` and
    the placeholder ids of `tokenizer`; `size="tiny"` narrows it (`TINY_VISION`, `TINY_TEXT`).
    """
    from vqtoken.modeling.configuration_vqtoken_llava_onevision import VQTokenLlavaOnevisionConfig

    vision = {
        "model_type": "siglip_vision_model",
        "hidden_size": 1152,
        "intermediate_size": 4304,
        "num_hidden_layers": 26,
        "num_attention_heads": 16,
        "image_size": 384,
        "patch_size": 14,
        "vision_use_head": False,
    }
    text = {
        "model_type": "qwen2",
        "vocab_size": 151936,
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "max_position_embeddings": 32768,
        "rope_theta": 1e6,
        "tie_word_embeddings": True,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
    }
    if size == "tiny":
        vision.update(TINY_VISION)
        text.update(TINY_TEXT)
    return VQTokenLlavaOnevisionConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.image_token_id,
        video_token_index=tokenizer.video_token_id,
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        tie_word_embeddings=True,
        vqtoken_mode="off" if variant == "stock" else "attention",
        vqtoken_selection_method="elbow",
        vqtoken_min_clusters=12,
        vqtoken_max_clusters=32,
        vqtoken_spatial_pool=variant == "vqtoken-pool",
        vqtoken_kmeans_backend="auto",
    )


def build_model(variant: str, dtype: torch.dtype, device: str, size: str = "0.5b"):
    """
    The model of `variant` and its processor. Random weights, drawn quickly (normal(0, 0.02) matrices, unit norms, zero
    biases) from seed 0 by a generator on `device` (the model is built there: on a GPU, drawing 0.9 B numbers on the
    CPU would take longer than the run).
    """
    from transformers.initialization import no_init_weights

    from vqtoken.modeling.modeling_vqtoken_llava_onevision import VQTokenLlavaOnevisionForConditionalGeneration
    from vqtoken.tiny import tiny_processor, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    config = onevision_config(variant, tokenizer, size)
    with no_init_weights(), torch.device(device):
        model = VQTokenLlavaOnevisionForConditionalGeneration(config)
    generator = torch.Generator(device).manual_seed(0)
    with torch.no_grad():
        for name, parameter in sorted(model.named_parameters()):
            if parameter.ndim >= 2:
                parameter.copy_(torch.randn(parameter.shape, generator=generator, device=device) * 0.02)
            elif name.endswith("weight") and "norm" in name:
                parameter.fill_(1.0)
            elif name.endswith("image_newline"):
                parameter.copy_(torch.randn(parameter.shape, generator=generator, device=device))
            else:
                parameter.zero_()
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    return model.to(device, dtype).eval(), tiny_processor(config, tokenizer)


def kv_bytes_per_position(text, dtype: torch.dtype) -> int:
    """Bytes one cached position holds: a key and a value vector per layer and key/value head of the language model
    configured by `text` (its text config), in `dtype`."""
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    element = torch.empty((), dtype=dtype).element_size()
    return 2 * text.num_hidden_layers * text.num_key_value_heads * head_dim * element


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def read_frames(clip: Path, frames: int):
    """Samples `frames` frames of the clip: a video file (decoded with PyAV) or a `.npy` frame array `[T, H, W, 3]`."""
    from vqtoken.modeling.video_io import load_video

    source = np.load(clip) if clip.suffix == ".npy" else clip
    return load_video(source, num_frames=frames)


def measure_request(model, processor, variant: str, frames: int, clip: Path, cache_file: Path) -> dict:
    """One timed request through the inference path users run: the stages up to the first token, then 16 tokens."""
    from vqtoken.cache import load_cached_video
    from vqtoken.modeling.vqtoken_inference import (
        StageTimer,
        answer_prompts,
        answer_prompts_from_codebooks,
        video_prompt,
    )

    prompt = video_prompt(processor, QUESTION)
    timer = StageTimer(model.device)
    settings = {"max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS}
    result = {}
    if variant == "cached":
        with timer.stage("load"):
            cached = load_cached_video(cache_file, model, num_frames=frames)
        [answer] = answer_prompts_from_codebooks(
            model, processor, [prompt], [cached.codebook], [cached.index_map], timings=timer.timings, **settings
        )
        result["cache_file_bytes"] = cache_file.stat().st_size
    else:
        with timer.stage("decode"):
            video = read_frames(clip, frames)
        [answer] = answer_prompts(model, processor, [prompt], [video], timings=timer.timings, **settings)
        result["clustered_tokens"] = answer.visual_tokens_clustered
    timings = dict(answer.timings)
    generation_seconds = timings.pop("generation")
    text_tokens = len(processor.tokenizer(prompt).input_ids) - 1  # the one `<video>` placeholder of the template
    per_position = kv_bytes_per_position(model.config.text_config, model.dtype)
    result.update(
        timings=timings,
        ttft_s=sum(timings.values()),
        decode_tokens_per_s=(NEW_TOKENS - 1) / generation_seconds,
        video_tokens=answer.visual_tokens,
        prompt_tokens=text_tokens + answer.visual_tokens,
        kv_bytes_per_position=per_position,
        kv_bytes_prompt=per_position * (text_tokens + answer.visual_tokens),
        kv_bytes_video=per_position * answer.visual_tokens,
    )
    if answer.num_clusters is not None:
        result["num_clusters"] = answer.num_clusters
    return result


def run_variant(
    variant: str,
    frames: int,
    clip: Path,
    cache_file: Path,
    dtype: torch.dtype,
    device: str,
    size: str = "0.5b",
    warm_up: bool = False,
) -> dict:
    """
    Runs one variant and returns its measurements (called in a fresh subprocess). `warm_up` runs the whole request
    once before the timed one.
    """
    from vqtoken.cache import encode_to_vqt

    start = time.perf_counter()
    model, processor = build_model(variant, dtype, device, size)
    build_seconds = time.perf_counter() - start
    with torch.no_grad():  # warm the language model up
        prompt = processor.tokenizer([QUESTION], return_tensors="pt").to(device)
        model.generate(**prompt, max_new_tokens=2, do_sample=False)
    if warm_up:
        measure_request(model, processor, variant, frames, clip, cache_file)
    baseline = _maxrss_bytes()
    measurements = measure_request(model, processor, variant, frames, clip, cache_file)
    result = {
        "variant": variant,
        "frames": frames,
        "build_s": build_seconds,
        "warmed_up": warm_up,
        "attn_implementation": model.config._attn_implementation,
        **measurements,
        "peak_rss_bytes": _maxrss_bytes(),
        "peak_rss_over_model_bytes": _maxrss_bytes() - baseline,
    }
    if variant == "vqtoken":  # the cache the `cached` variant asks from (not timed as part of this variant)
        start = time.perf_counter()
        encode_to_vqt(model, processor, [read_frames(clip, frames)], [cache_file], num_frames=frames)
        result["cache_encode_and_write_s"] = time.perf_counter() - start  # decoding, encoding and writing again
        result["cache_file_bytes"] = cache_file.stat().st_size
    return result


# ---------------------------------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------------------------------


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (host: {cpu})"
    return f"{cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"


def pyav_available() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def write_source_clip(folder: Path, num_frames: int) -> Path:
    """The synthetic source clip: an mp4 (`clip.mp4`) where PyAV can encode it, else its frames (`clip.npy`)."""
    from vqtoken.synthetic import ClipSpec, render_clip, write_clip

    clip = folder / ("clip.mp4" if pyav_available() else "clip.npy")
    if not clip.exists():
        frames = render_clip(ClipSpec("red", count=2), num_frames, 360, 640)
        if clip.suffix == ".mp4":
            write_clip(clip, frames, fps=8)
        else:
            np.save(clip, frames)
    return clip


def _load() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "n/a"


def _mb(value: float) -> str:
    return f"{value / 2**20:.2f}" if value < 2**30 else f"{value / 2**20:,.0f}"


def format_table(results: list[dict]) -> str:
    header = (
        "| frames | variant | video tokens | K | " + " | ".join(STAGES) + " | **TTFT s** | decode tok/s | "
        "peak RSS GB (over model) | KV MB / video | KV MB prompt | vs stock TTFT | vs stock KV / video |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    stock = {r["frames"]: r for r in results if r["variant"] == "stock"}
    for r in results:
        t = r["timings"]
        base = stock.get(r["frames"])
        speedup = f"{base['ttft_s'] / r['ttft_s']:.1f}x" if base else "-"
        kv_ratio = f"{base['kv_bytes_video'] / r['kv_bytes_video']:.0f}x smaller" if base else "-"
        cells = [
            str(r["frames"]),
            VARIANT_LABELS[r["variant"]],
            str(r["video_tokens"]),
            str(r.get("num_clusters", "-")),
            *[f"{t[s]:.2f}" if s in t else "-" for s in STAGES],
            f"**{r['ttft_s']:.2f}**",
            f"{r['decode_tokens_per_s']:.1f}",
            f"{r['peak_rss_bytes'] / 1e9:.2f} (+{r['peak_rss_over_model_bytes'] / 1e9:.2f})",
            _mb(r["kv_bytes_video"]),
            _mb(r["kv_bytes_prompt"]),
            "1.0x" if r["variant"] == "stock" else speedup,
            "1x" if r["variant"] == "stock" else kv_ratio,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: list[dict], path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame_counts = sorted({r["frames"] for r in results})
    figure, axes = plt.subplots(1, len(frame_counts), figsize=(7 * len(frame_counts), 3.8), squeeze=False)
    colours = dict(zip(STAGES, ("#8c564b", "#9467bd", "#1f77b4", "#ff7f0e", "#17becf", "#bcbd22", "#2ca02c")))
    for axis, frames in zip(axes[0], frame_counts):
        rows = [r for r in results if r["frames"] == frames]
        labels = [VARIANT_LABELS[r["variant"]] for r in rows]
        for index, r in enumerate(rows):
            left = 0.0
            for stage in STAGES:
                seconds = r["timings"].get(stage, 0.0)
                axis.barh(
                    index,
                    seconds,
                    left=left,
                    color=colours[stage],
                )
                left += seconds
            axis.text(left, index, f" {r['ttft_s']:.2f} s", va="center", fontsize=8)
        axis.set_yticks(range(len(rows)), labels, fontsize=8)
        axis.invert_yaxis()
        axis.set_xlabel("seconds to first token")
        axis.set_title(f"{frames} frames")
        axis.set_xlim(0, max(r["ttft_s"] for r in rows) * 1.25)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[stage]) for stage in STAGES]
    figure.legend(handles, STAGES, loc="lower center", ncol=len(STAGES), fontsize=8)
    figure.suptitle(
        "LLaVA-OneVision-0.5B architecture, random weights: time per stage up to the first token", fontsize=10
    )
    figure.tight_layout(rect=(0, 0.08, 1, 0.95))
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--dtype", default=None, help="float32 (CPU default: faster than bf16 here) or bfloat16 (GPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--clip-frames", type=int, default=64, help="frames of the synthetic source clip")
    parser.add_argument(
        "--size",
        choices=("0.5b", "tiny"),
        default="0.5b",
        help="tiny: 2 narrow layers per tower, to check that the benchmark runs (no timing value)",
    )
    parser.add_argument("--out-json", type=Path, default=None)
    parser.add_argument("--out-md", type=Path, default=None)
    parser.add_argument("--out-png", type=Path, default=None)
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="keep the clip and the .vqt files here (default: a temporary folder)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--clip", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    dtype_name = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    dtype = getattr(torch, dtype_name)
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.worker:
        [variant] = args.variants
        [frames] = args.frames
        warm_up = args.device.startswith("cuda")
        print(
            json.dumps(
                run_variant(variant, frames, args.clip, args.cache_file, dtype, args.device, args.size, warm_up)
            )
        )
        return 0

    results, failed = [], []
    started = datetime.datetime.now()
    loads = [_load()]
    with tempfile.TemporaryDirectory() as temporary:
        folder = args.work_dir or Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        clip = write_source_clip(Path(folder), args.clip_frames)
        for frames in args.frames:
            cache_file = Path(folder) / f"clip-{frames}.vqt"
            for variant in args.variants:
                command = [
                    sys.executable,
                    "-m",
                    "vqtoken.benchmarks.end_to_end",
                    "--worker",
                    "--variants",
                    variant,
                    "--frames",
                    str(frames),
                    "--clip",
                    str(clip),
                    "--cache-file",
                    str(cache_file),
                    "--dtype",
                    dtype_name,
                    "--device",
                    args.device,
                    "--size",
                    args.size,
                ]
                if args.threads:
                    command += ["--threads", str(args.threads)]
                print(f"[{datetime.datetime.now():%H:%M:%S}] {variant} {frames} frames (load {_load()})", flush=True)
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode != 0:
                    print(done.stderr[-3000:], file=sys.stderr)
                    failed.append(f"{variant} {frames} frames")
                    continue
                result = json.loads(done.stdout.strip().splitlines()[-1])
                result["load_avg"] = _load()
                loads.append(result["load_avg"])
                results.append(result)
                print(json.dumps(result), flush=True)
                if args.out_json:
                    data = json.dumps(results, indent=1).encode()
                    write_atomically(args.out_json, lambda stream: stream.write(data))
    import transformers

    source = (
        "mp4 decoded with PyAV"
        if clip.suffix == ".mp4"
        else "frame array (.npy; no PyAV here: 'decode' = reading it and sampling the frames)"
    )
    header = (
        f"Machine: {_machine()}; torch {torch.__version__}, transformers {transformers.__version__}, "
        f"{dtype_name}, device {args.device}, {args.size} architecture; source clip: {source}; started "
        f"{started:%Y-%m-%d %H:%M}; load average (1/5/15 min) before and after each variant: "
        f"{'; '.join(loads)}."
    )
    if failed:
        header += " FAILED (no row): " + ", ".join(failed) + "."
    table = header + "\n\n" + format_table(results)
    print(table)
    if args.out_md:
        args.out_md.write_text(table + "\n")
    if args.out_png and results:
        plot(results, args.out_png)
    return 1 if failed else 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    raise SystemExit(main())
