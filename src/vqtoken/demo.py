"""
`vqtoken demo`: the whole path of a video through VQToken, offline, on a built-in default.

The default is a small VQToken model with RANDOM weights (its answers are meaningless) on a generated clip. It shows
what VQToken does to the token count and how long each stage takes; it says nothing about answer quality.
"""

import logging
import tempfile
from pathlib import Path

import torch

from .inference import VideoAnswer, ask_video
from .modeling.modeling_vqtoken_llava_onevision import VQTokenLlavaOnevisionForConditionalGeneration
from .synthetic import make_moving_square_clip, write_clip
from .tiny import tiny_config, tiny_processor, tiny_tokenizer


logger = logging.getLogger(__name__)

DEMO_QUESTION = "what colour is the square ?"


def build_random_demo_model(seed: int = 0, **vqtoken_settings):
    """
    A small randomly initialised VQToken model and its processor: 112 px frames in 14 px patches (64 tokens per
    frame), a 2-layer SigLIP tower and a 2-layer Qwen2 language model of width 64.
    """
    tokenizer = tiny_tokenizer()
    config = tiny_config(tokenizer, image_size=112, patch_size=14, hidden_size=64, **vqtoken_settings)
    torch.manual_seed(seed)
    model = VQTokenLlavaOnevisionForConditionalGeneration(config).eval()
    return model, tiny_processor(config, tokenizer)


def run_demo(num_frames: int = 32, mode: str = "attention", selection: str = "elbow", max_new_tokens: int = 8) -> VideoAnswer:
    """Writes a generated clip to an mp4 file, decodes it and asks the built-in default model about it."""
    model, processor = build_random_demo_model(
        vqtoken_mode=mode, vqtoken_selection_method=selection, vqtoken_min_clusters=12, vqtoken_max_clusters=32
    )
    clip = make_moving_square_clip(num_frames=max(num_frames, 2) * 2, height=112, width=112, color=(255, 0, 0))
    with tempfile.TemporaryDirectory() as folder:
        path = write_clip(Path(folder) / "demo.mp4", clip, fps=8)
        return ask_video(model, processor, path, DEMO_QUESTION, num_frames=num_frames, max_new_tokens=max_new_tokens)


def format_report(result: VideoAnswer, title: str) -> str:
    """A short human-readable report of one answer: token counts, K, and the time of each stage."""
    lines = [
        title,
        f"frames sampled:        {result.num_frames}",
        f"visual tokens:         {result.visual_tokens_stock} (stock OneVision) / {result.visual_tokens_clustered} "
        f"(clustered) -> {result.visual_tokens} (to the language model)",
        f"clusters (K):          {result.num_clusters}",
        f"answer:                {result.answer!r}",
        "time per stage (s):    "
        + ", ".join(f"{stage} {seconds:.3f}" for stage, seconds in result.timings.items()),
    ]
    return "\n".join(lines)
