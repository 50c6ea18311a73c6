"""
`vqtoken demo`: the whole path of a video through VQToken, offline, on a built-in default.

The default is a small VQToken model TRAINED on the synthetic clip set of `vqtoken.training.synthetic_data` (colour,
shape, direction of motion and count of sliding shapes) and shipped in the package (`assets/default-model/`, 2.7 MB of
weights): 64 px frames in 8 px patches, 8 frames, a 2-layer SigLIP of width 64, a 2-layer Qwen2 of width 128,
VQ-Attention over 15 clusters (16 visual tokens per video). On held-out clips it answers 88.8 % of the questions
(colour 100 %, shape 99 %, direction 92 %, count 64 %; chance 25 %; BENCHMARKS.md, "Built-in default model
(issue 6)"). It knows nothing about real videos. `examples/training/train_default_model.py` reproduces it.
"""

import tempfile
from pathlib import Path

from .loading import load_model_and_processor
from .modeling.vqtoken_inference import VideoAnswer, ask_video


DEMO_QUESTION = "what colour is the shape ?"
DEMO_EXPECTED_ANSWER = "red"


def demo_clip(num_frames: int = 16):
    """A red square sliding right, as in the synthetic training set (64 x 64 frames)."""
    from .synthetic import ClipSpec, render_clip

    return render_clip(
        ClipSpec(colour="red", shape="square", direction="right", count=2, seed=7),
        num_frames=max(num_frames, 2),
        height=64,
    )


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
        num_frames: frames sampled from the clip (default: the model's own, the 8 it was trained with; in mode
            `"attention"` more than 15 frames give more than 16 visual tokens).
        mode, selection: override `vqtoken_mode` / `vqtoken_selection_method` (default: the model's, attention with
            15 fixed clusters). An adaptive selection searches K in 12..15.
    """
    settings = {}
    if mode is not None:
        settings["vqtoken_mode"] = mode
    if selection is not None:
        settings["vqtoken_selection_method"] = selection
    model, processor = load_model_and_processor(None, **settings)
    num_frames = num_frames or processor.default_num_frames
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
        "time per stage (s):    " + ", ".join(f"{stage} {seconds:.3f}" for stage, seconds in result.timings.items()),
    ]
    return "\n".join(lines)
