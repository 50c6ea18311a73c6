"""
`vqtoken demo`: the whole path of a video through VQToken, offline, on a built-in default.

The default is a small VQToken model TRAINED on the synthetic clip set of `vqtoken.training.synthetic_data` (colour,
shape, direction of motion and count of sliding shapes) and shipped in the package (`assets/default-model/`, 2.7 MB of
weights): 64 px frames in 8 px patches, 8 frames, a 2-layer SigLIP of width 64, a 2-layer Qwen2 of width 128,
VQ-Attention over 15 clusters (16 visual tokens per video). On held-out clips it answers 88.8 % of the questions
(colour 100 %, shape 99 %, direction 92 %, count 64 %; chance 25 %; BENCHMARKS.md, "Built-in default model (issue 6)"). It
knows nothing about real videos. `examples/training/train_default_model.py` reproduces it.
"""

import logging
import tempfile
from importlib import resources
from pathlib import Path

import torch

from .inference import VideoAnswer, ask_video
from .modeling.modeling_vqtoken_llava_onevision import VQTokenLlavaOnevisionForConditionalGeneration
from .tiny import tiny_config, tiny_processor, tiny_tokenizer


logger = logging.getLogger(__name__)

DEFAULT_MODEL_LABEL = "built-in default: a small model trained on synthetic clips of sliding shapes"
DEFAULT_MODEL_FRAMES = 8
DEMO_QUESTION = "what colour is the shape ?"
DEMO_EXPECTED_ANSWER = "red"


def default_model_dir() -> Path:
    """The folder of the built-in default model inside the installed package."""
    return Path(str(resources.files("vqtoken") / "assets" / "default-model"))


def load_default_model(**vqtoken_settings):
    """The built-in trained default model (eval mode) and its processor; see [`load_model_and_processor`]."""
    return load_model_and_processor(None, **vqtoken_settings)


def load_model_and_processor(name: str | None = None, **vqtoken_settings):
    """
    The model `name` (a folder or Hub id, loaded with the Auto classes) or, for `None`, the built-in default, with
    `vqtoken_*` settings applied and checked; the processor follows the mode and cluster count.

    Returns:
        `(model, processor)`, the model in eval mode.
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    if name is None:
        name = default_model_dir()
        if not (name / "model.safetensors").is_file():
            raise FileNotFoundError(f"The built-in default model is missing from {name}; reinstall vqtoken.")
    model = AutoModelForImageTextToText.from_pretrained(name, **vqtoken_settings).eval()
    model.config.validate_vqtoken()
    processor = AutoProcessor.from_pretrained(name)
    processor.vqtoken_mode = model.config.vqtoken_mode
    processor.vqtoken_max_clusters = model.config.vqtoken_max_clusters
    return model, processor


def build_random_demo_model(seed: int = 0, **vqtoken_settings):
    """
    A small randomly initialised VQToken model and its processor (answers are meaningless): 112 px frames in 14 px
    patches (64 tokens per frame), a 2-layer SigLIP tower and a 2-layer Qwen2 language model of width 64.
    """
    tokenizer = tiny_tokenizer()
    config = tiny_config(tokenizer, image_size=112, patch_size=14, hidden_size=64, **vqtoken_settings)
    torch.manual_seed(seed)
    model = VQTokenLlavaOnevisionForConditionalGeneration(config).eval()
    return model, tiny_processor(config, tokenizer)


def demo_clip(num_frames: int = 16):
    """A red square sliding right, as in the synthetic training set (64 x 64 frames)."""
    from .training.synthetic_data import ClipSpec, render_clip

    return render_clip(ClipSpec(colour="red", shape="square", direction="right", count=2, seed=7),
                       num_frames=max(num_frames, 2), size=64)


def run_demo(
    num_frames: int | None = None,
    mode: str | None = None,
    selection: str | None = None,
    max_new_tokens: int = 8,
    question: str = DEMO_QUESTION,
) -> VideoAnswer:
    """
    Writes a synthetic clip to an mp4 file, decodes it and asks the built-in default model about it.

    Args:
        num_frames: frames sampled from the clip (default: the 8 the model was trained with; in mode `"attention"`
            more than 15 frames give more than 16 visual tokens).
        mode, selection: override `vqtoken_mode` / `vqtoken_selection_method` (default: the model's, attention with
            15 fixed clusters). An adaptive selection searches K in 12..15.
    """
    settings = {}
    if mode is not None:
        settings["vqtoken_mode"] = mode
    if selection is not None:
        settings["vqtoken_selection_method"] = selection
    model, processor = load_default_model(**settings)
    num_frames = num_frames or DEFAULT_MODEL_FRAMES
    from .synthetic import write_clip

    with tempfile.TemporaryDirectory() as folder:
        path = write_clip(Path(folder) / "demo.mp4", demo_clip(2 * num_frames), fps=8)
        return ask_video(model, processor, path, question, num_frames=num_frames, max_new_tokens=max_new_tokens)


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
