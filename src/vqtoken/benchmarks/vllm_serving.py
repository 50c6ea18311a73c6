# Copyright 2026 The VQToken for Transformers authors. Licensed under the Apache License, Version 2.0.
"""
Serving benchmark in vLLM, side by side in one run: stock LLaVA-OneVision (vLLM's own model class) against VQToken
(this package's vLLM plugin, attention mode, fixed K = 32), the same random weights, 32-frame videos.

Architectures: `tiny` (SigLIP at 384 px / patch 14 with 2 small layers, so that a frame gives the real 27 x 27 grid
and stock's 196 pooled tokens; a 2-layer Qwen2 of width 256) and `onevision-0.5b` (the LLaVA-OneVision-0.5B
architecture of `end_to_end.py`). Weights are random: speed and memory do not depend on their values. Both variants
run the same engine settings in their own subprocess: fp32, eager, block size 32, prefix caching off (every request
pays for its own KV blocks), one KV budget given in tokens (`num_gpu_blocks_override`).

Measured per variant, with vLLM's own counters (`RequestOutput.metrics`, the processed prompt):
- requests/s: `--requests` different videos submitted at once, divided by the wall time until the last answer;
- TTFT: `first_token_latency` of a request alone, and the median over the batch (queueing included: the batch
  competes for the KV budget);
- KV blocks per request: ceil((prompt + answer tokens) / block size); KV per video: its placeholder tokens times the
  bytes of one token's keys and values;
- most concurrent videos in the KV budget: budget blocks // blocks per request, and the peak number of requests
  vLLM actually ran at once when given more than that (copies of one video: the encoder output is computed once),
  with the preemptions it needed.

Usage (in .venv-vllm, see scripts/setup_vllm.sh):
    LD_PRELOAD=.venv-vllm/lib/libiomp5.so python -m vqtoken.benchmarks.vllm_serving --arch tiny --out-md table.md
"""

import argparse
import datetime
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


VARIANTS = ("stock", "vqtoken")
VARIANT_LABELS = {"stock": "stock OneVision (vLLM)", "vqtoken": "VQToken plugin (attention, K = 32)"}
BLOCK_SIZE = 32  # the smallest block vLLM's CPU attention takes (a multiple of 32); GPUs default to 16
QUESTION = "what colour is the square in this video ? answer with one word ."


def save_stock_onevision_folder(vqtoken_folder, output) -> str:
    """
    Writes the stock LLaVA-OneVision counterpart of a VQToken folder, as vLLM's own
    `LlavaOnevisionForConditionalGeneration` loads it: the same weights without `vq_attention`, the vision tower
    under `vision_tower.vision_model.` (the layout of the llava-hf checkpoints), the configuration without the VQToken
    fields, and a stock processor.
    """
    from safetensors.torch import load_file, save_file
    from transformers import AutoProcessor, LlavaOnevisionConfig

    vqtoken_folder, output = Path(vqtoken_folder), Path(output)
    output.mkdir(parents=True, exist_ok=True)
    config = json.loads((vqtoken_folder / "config.json").read_text())
    dropped = ("auto_map", "custom_pipelines", "architectures", "model_type")
    stock_config = LlavaOnevisionConfig(
        **{key: value for key, value in config.items() if not key.startswith("vqtoken_") and key not in dropped}
    )
    stock_config.architectures = ["LlavaOnevisionForConditionalGeneration"]
    stock_config.save_pretrained(output)
    weights = {}
    for path in sorted(vqtoken_folder.glob("*.safetensors")):
        for key, tensor in load_file(path).items():
            if key.startswith("model.vq_attention."):
                continue
            if key.startswith("model.vision_tower."):
                key = "model.vision_tower.vision_model." + key.removeprefix("model.vision_tower.")
            weights[key] = tensor
    save_file(weights, output / "model.safetensors", metadata={"format": "pt"})
    AutoProcessor.from_pretrained(vqtoken_folder).to_onevision_processor().save_pretrained(output)
    (output / "generation_config.json").write_text((vqtoken_folder / "generation_config.json").read_text())
    return str(output)


def save_vqtoken_folder(arch: str, output) -> str:
    """A VQToken folder (attention mode, fixed K = 32, random weights) of architecture `tiny` or `onevision-0.5b`,
    with the tiny offline tokenizer (the vocabulary does not change the cost)."""
    import torch

    from vqtoken.modeling.modeling_vqtoken_llava_onevision import VQTokenLlavaOnevisionForConditionalGeneration
    from vqtoken.tiny import tiny_config, tiny_processor, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    settings = {"vqtoken_mode": "attention", "vqtoken_selection_method": "fixed", "vqtoken_max_clusters": 32}
    if arch == "tiny":
        config = tiny_config(tokenizer, image_size=384, patch_size=14, hidden_size=256, **settings)
        config.text_config.max_position_embeddings = 32768  # stock's 6,273 video tokens, as Qwen2-0.5B's
        torch.manual_seed(0)
        model = VQTokenLlavaOnevisionForConditionalGeneration(config).eval()
    else:
        from .end_to_end import build_model

        model, _ = build_model("vqtoken", torch.float32, "cpu")  # its token ids are the tiny tokenizer's
        config = model.config
        for name, value in settings.items():
            setattr(config, name, value)
        config.validate_vqtoken_settings()
    model.save_pretrained(output)
    tiny_processor(config, tokenizer).save_pretrained(output)
    return str(output)


def benchmark_video(seed: int, num_frames: int) -> np.ndarray:
    """`(num_frames, 96, 96, 3)` uint8: a square sliding over a background (`vqtoken.synthetic`), a different one per
    seed; the video processor resizes it to the tower's 384 x 384. (Noise would make K-means run all its
    iterations, which real videos do not.)"""
    from vqtoken.synthetic import ClipSpec, render_clip

    rng = np.random.default_rng(seed)
    color = tuple(int(value) for value in rng.integers(96, 256, 3))
    direction = ("right", "left", "up", "down")[seed % 4]
    return render_clip(ClipSpec(color, direction=direction, seed=seed), num_frames, 96, 96)


def _peak_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak


def run_variant(
    folder: str,
    variant: str,
    frames: int,
    requests: int,
    max_tokens: int,
    kv_budget_tokens: int,
    concurrency_requests: int,
) -> dict:
    """Measures one variant in this process (called in a fresh subprocess by [`main`])."""
    import torch
    from transformers import AutoProcessor
    from vllm import LLM, SamplingParams

    from .end_to_end import kv_bytes_per_position

    budget_blocks = kv_budget_tokens // BLOCK_SIZE
    start = time.perf_counter()
    llm = LLM(
        folder,
        dtype="float32",
        enforce_eager=True,
        max_model_len=8192,
        seed=0,
        block_size=BLOCK_SIZE,
        limit_mm_per_prompt={"image": 0, "video": 1},
        enable_prefix_caching=False,
        disable_log_stats=False,
        num_gpu_blocks_override=budget_blocks,
        max_num_seqs=1024,
        max_num_batched_tokens=8192,
    )
    startup_seconds = time.perf_counter() - start
    hf_config = llm.llm_engine.model_config.hf_config
    text_config = hf_config.text_config
    kv_bytes_per_token = kv_bytes_per_position(text_config, torch.float32)
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": QUESTION}]}]
    prompt = AutoProcessor.from_pretrained(folder).apply_chat_template(messages, add_generation_prompt=True)
    params = SamplingParams(max_tokens=max_tokens, min_tokens=max_tokens, temperature=0.0)

    def batch(seeds: list[int]):
        return [{"prompt": prompt, "multi_modal_data": {"video": benchmark_video(seed, frames)}} for seed in seeds]

    start = time.perf_counter()
    llm.generate(batch([1000]), params, use_tqdm=False)
    warmup_seconds = time.perf_counter() - start
    [alone] = llm.generate(batch([1001]), params, use_tqdm=False)

    start = time.perf_counter()
    outputs = llm.generate(batch(list(range(requests))), params, use_tqdm=False)
    batch_seconds = time.perf_counter() - start

    video_tokens = sum(token == hf_config.video_token_index for token in alone.prompt_token_ids)
    request_tokens = len(alone.prompt_token_ids) + max_tokens
    blocks_per_request = math.ceil(request_tokens / BLOCK_SIZE)

    crowd = llm.generate(batch([2000] * concurrency_requests), params, use_tqdm=False) if concurrency_requests else []
    intervals = [(output.metrics.scheduled_ts, output.metrics.last_token_ts) for output in crowd]
    result = {
        "variant": variant,
        "frames": frames,
        "startup_s": startup_seconds,
        "warmup_s": warmup_seconds,
        "video_tokens": video_tokens,
        "prompt_tokens": len(alone.prompt_token_ids),
        "answer_tokens": max_tokens,
        "requests": requests,
        "requests_per_s": requests / batch_seconds,
        "batch_s": batch_seconds,
        "ttft_alone_s": alone.metrics.first_token_latency,
        "ttft_batch_median_s": float(np.median([output.metrics.first_token_latency for output in outputs])),
        "block_size": BLOCK_SIZE,
        "blocks_per_request": blocks_per_request,
        "kv_bytes_per_token": kv_bytes_per_token,
        "kv_bytes_per_video": video_tokens * kv_bytes_per_token,
        "kv_budget_blocks": budget_blocks,
        "kv_budget_bytes": budget_blocks * BLOCK_SIZE * kv_bytes_per_token,
        "max_concurrent_videos": budget_blocks // blocks_per_request,
        "concurrency_requests": concurrency_requests,
        "peak_running": _peak_overlap(intervals) if crowd else None,
        "preemptions": sum(output.metrics.num_preemptions for output in crowd) if crowd else None,
    }
    llm.llm_engine.engine_core.shutdown()
    return result


def _machine() -> str:
    from .end_to_end import _machine as machine

    return machine()


def _load() -> str:
    from .end_to_end import _load as load

    return load()


def format_table(results: list[dict]) -> str:
    header = (
        "| variant | video tokens | prompt tokens | requests/s | TTFT alone s | TTFT median in batch s | "
        "KV blocks / request | KV / video | vs stock KV / video | max concurrent videos in budget | "
        "vs stock | peak running (given) | preemptions |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    stock = next((r for r in results if r["variant"] == "stock"), None)
    for r in results:
        kv_ratio = f"{stock['kv_bytes_per_video'] / r['kv_bytes_per_video']:.0f}x smaller" if stock else "-"
        concurrency_ratio = f"{r['max_concurrent_videos'] / stock['max_concurrent_videos']:.0f}x" if stock else "-"
        cells = [
            VARIANT_LABELS[r["variant"]],
            str(r["video_tokens"]),
            str(r["prompt_tokens"]),
            f"{r['requests_per_s']:.3f}",
            f"{r['ttft_alone_s']:.2f}",
            f"{r['ttft_batch_median_s']:.2f}",
            str(r["blocks_per_request"]),
            f"{r['kv_bytes_per_video'] / 2**20:.2f} MiB",
            kv_ratio,
            str(r["max_concurrent_videos"]),
            concurrency_ratio,
            f"{r['peak_running']} ({r['concurrency_requests']})" if r["peak_running"] is not None else "not run",
            str(r["preemptions"]) if r["preemptions"] is not None else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=("tiny", "onevision-0.5b"), default="tiny")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--requests", type=int, default=8, help="different videos of the throughput batch")
    parser.add_argument("--max-tokens", type=int, default=16, help="answer length (min_tokens = max_tokens)")
    parser.add_argument("--kv-budget-tokens", type=int, default=32768, help="KV cache budget of both variants")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument(
        "--crowd",
        type=int,
        nargs=2,
        default=(8, 600),
        metavar=("STOCK", "VQTOKEN"),
        help="copies of one video submitted at once to see how many vLLM runs together in the budget "
        "(more than it holds; 0 skips)",
    )
    parser.add_argument("--work-dir", type=Path, default=None, help="keep the model folders here")
    parser.add_argument("--out-json", type=Path, default=None)
    parser.add_argument("--out-md", type=Path, default=None)
    parser.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--concurrency-requests", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker is not None:
        [variant] = args.variants
        result = run_variant(
            str(args.worker),
            variant,
            args.frames,
            args.requests,
            args.max_tokens,
            args.kv_budget_tokens,
            args.concurrency_requests,
        )
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    started = datetime.datetime.now()
    results, loads = [], [_load()]
    with tempfile.TemporaryDirectory() as temporary:
        work = args.work_dir or Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        folders = {"vqtoken": work / f"{args.arch}-vqtoken", "stock": work / f"{args.arch}-stock"}
        if not (folders["vqtoken"] / "config.json").exists():
            save_vqtoken_folder(args.arch, folders["vqtoken"])
        if not (folders["stock"] / "config.json").exists():
            save_stock_onevision_folder(folders["vqtoken"], folders["stock"])
        for variant in args.variants:
            concurrency = dict(zip(VARIANTS, args.crowd))[variant]
            command = [
                sys.executable,
                "-m",
                "vqtoken.benchmarks.vllm_serving",
                "--worker",
                str(folders[variant]),
                "--variants",
                variant,
                "--frames",
                str(args.frames),
                "--requests",
                str(args.requests),
                "--max-tokens",
                str(args.max_tokens),
                "--kv-budget-tokens",
                str(args.kv_budget_tokens),
                "--concurrency-requests",
                str(concurrency),
            ]
            print(f"[{datetime.datetime.now():%H:%M:%S}] {variant}", flush=True)
            # in-process engine; a 1 GiB KV pool (on CPUs vLLM otherwise reserves most of the memory) of which the
            # budget (num_gpu_blocks_override) is used
            env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1"}
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if done.returncode != 0 or not lines:
                print(done.stderr[-4000:], file=sys.stderr)
                return 1
            result = json.loads(lines[-1].removeprefix("RESULT "))
            loads.append(_load())
            results.append(result)
            print(json.dumps(result), flush=True)
    import torch
    import vllm

    header = (
        f"Machine: {_machine()}; vLLM {vllm.__version__} (CPU), torch {torch.__version__}, fp32; "
        f"architecture {args.arch}; {args.frames}-frame videos; {args.requests} requests per batch, "
        f"{args.max_tokens} answer tokens; KV budget {args.kv_budget_tokens} tokens "
        f"({results[0]['kv_budget_bytes'] / 2**20:.0f} MiB); started {started:%Y-%m-%d %H:%M}; load average "
        f"(1/5/15 min) before and after each variant: {'; '.join(loads)}."
    )
    table = header + "\n\n" + format_table(results)
    print(table)
    if args.out_json:
        args.out_json.write_text(json.dumps(results, indent=1))
    if args.out_md:
        args.out_md.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    raise SystemExit(main())
