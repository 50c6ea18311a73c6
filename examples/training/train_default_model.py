"""
Reproduces the built-in default model of `vqtoken demo` and the accuracy table of BENCHMARKS.md
("Built-in default model (issue 6)").

1. writes the synthetic video QA set (colour, shape, direction, count; chance 25 % each): training clips asked all
   four questions in one multi-turn conversation, and held-out clips asked one question per record;
2. trains the same small model with `vqtoken.training.train`, once per way of feeding the video: VQToken centroids
   (15 clusters, 16 tokens), VQToken attention (15 clusters, 16 tokens) from scratch, VQToken attention started from
   the trained centroids model (the shipped default: the centroids stage teaches the vision tower the object's shape,
   which the VQ-Attention alone never learns to pass on), stock OneVision 2x2 pooling (8 x 16 + 1 tokens) and no
   compression (8 x 64 + 1 tokens);
3. scores greedy answers on the held-out clips and prints a Markdown table;
4. with --install VARIANT, copies that model into src/vqtoken/assets/default-model/.

    python examples/training/train_default_model.py --variants centroids attention-from-centroids \
        --install attention-from-centroids                                               # the shipped model
    python examples/training/train_default_model.py --variants attention pooled full     # the other rows

Each variant takes 15-60 minutes on one or two CPU threads (`attention-from-centroids` needs the `centroids` run
in the same --work-dir, and its train time counts both stages).

Model: 64 px frames in 8 px patches (64 tokens per frame), 8 frames, SigLIP 2 layers of width 64, Qwen2 2 layers of
width 128, the offline tiny tokenizer (every answer is one token). Everything trains (vision tower, projector,
VQ-Attention, language model).
"""

import argparse
import json
import logging
import os
import shutil
from pathlib import Path
from typing import NamedTuple

import torch

from vqtoken.training import load_config, train
from vqtoken.training.synthetic_data import generate_synthetic_dataset
from vqtoken.training.synthetic_eval import evaluate_synthetic


REPO = Path(__file__).resolve().parents[2]
ASSET_DIR = REPO / "src" / "vqtoken" / "assets" / "default-model"

TINY = (
    "{{image_size: 64, patch_size: {patch}, hidden_size: 128, text_layers: 2, vision_hidden_size: 64, "
    "vision_layers: 2, seed: 0}}"
)
VQ_COMMON = (
    "vqtoken_selection_method: fixed, vqtoken_max_clusters: 15, vqtoken_min_clusters: 12, "
    "vqtoken_attention_heads: 4, vqtoken_attention_intermediate_size: 256, vqtoken_attention_dropout: 0.0"
)


class Variant(NamedTuple):
    mode: str  # vqtoken_mode
    video_tokens: str  # "model" (what the mode gives) or "full" (every projected token)
    label: str  # row label of the table
    starts_from: str | None = None  # the variant whose final model this one continues; None: from scratch


VARIANTS = {
    "centroids": Variant("centroids", "model", "VQToken, centroids (K = 15)"),
    "attention": Variant("attention", "model", "VQToken, attention (K = 15)"),
    "attention-from-centroids": Variant(
        "attention", "model", "VQToken, attention (K = 15), started from the centroids model", "centroids"
    ),
    "pooled": Variant("off", "model", "stock OneVision 2x2 pooling"),
    "full": Variant("centroids", "full", "no compression"),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", default="runs/default-model")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=sorted(VARIANTS))
    parser.add_argument("--train-clips", type=int, default=4000)
    parser.add_argument("--eval-clips", type=int, default=100)
    parser.add_argument("--steps", type=int, default=3000, help="steps of a variant trained from scratch")
    parser.add_argument(
        "--continued-steps",
        type=int,
        default=4500,
        help="steps of a variant that starts from another variant's final model",
    )
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0, help="training seed (data order)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (2 only on an idle machine)")
    parser.add_argument("--patch-size", type=int, default=8, help="8: 8 x 8 = 64 tokens per 64 px frame")
    parser.add_argument("--install", choices=sorted(VARIANTS), help="copy this variant into the package assets")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)

    work = Path(args.work_dir)
    for position, name in enumerate(args.variants):
        first = VARIANTS[name].starts_from
        if first is None or first in args.variants[:position] or (work / f"{first}_scores.json").is_file():
            continue
        parser.error(
            f"variant {name!r} starts from the final model of {first!r}: list {first!r} before it, or "
            f"train it first in the same --work-dir ({work})."
        )
    data = work / "data"
    if not (data / "train.jsonl").is_file():
        generate_synthetic_dataset(
            data,
            args.train_clips,
            questions_per_clip=4,
            multi_turn=True,
            num_frames=16,
            size=64,
            seed=0,
            split="train",
        )
        generate_synthetic_dataset(
            data, args.eval_clips, questions_per_clip=4, num_frames=16, size=64, seed=12345, split="heldout"
        )
    rows = []
    for name in args.variants:
        variant = VARIANTS[name]
        output_dir = work / name
        lr = args.lr
        if variant.starts_from is None:
            start = ["model.name_or_path=tiny", f"model.tiny={TINY.format(patch=args.patch_size)}"]
            steps = args.steps
            earlier_minutes = 0.0
        else:
            start = [f"model.name_or_path={work / variant.starts_from / 'final'}"]
            steps = args.continued_steps
            earlier_minutes = json.loads((work / f"{variant.starts_from}_scores.json").read_text())["train_minutes"]
        config = load_config(
            None,
            [
                *start,
                f"model.vqtoken={{vqtoken_mode: '{variant.mode}', {VQ_COMMON}}}",
                f"model.video_tokens={variant.video_tokens}",
                f"data.train_files=[{(data / 'train.jsonl').resolve()}]",
                "data.num_frames=8",
                f"train.parts={{vq_attention: {lr}, projector: {lr}, vision_tower: {lr}, language_model: {lr}}}",
                f"train.per_device_batch_size={args.batch}",
                "train.gradient_accumulation_steps=1",
                f"train.max_steps={steps}",
                f"train.warmup_steps={max(1, steps // 20)}",
                "train.weight_decay=0.01",
                f"train.seed={args.seed}",
                f"logging.output_dir={output_dir}",
                "logging.log_every=25",
            ],
        )
        if variant.mode != "attention":
            config.train.parts.pop("vq_attention")
        result = train(config)
        minutes = earlier_minutes + result.seconds / 60
        from vqtoken import VQTokenLlavaOnevisionForConditionalGeneration, VQTokenLlavaOnevisionProcessor

        model = VQTokenLlavaOnevisionForConditionalGeneration.from_pretrained(result.final_model_dir).eval()
        processor = VQTokenLlavaOnevisionProcessor.from_pretrained(result.final_model_dir)
        scores = evaluate_synthetic(
            model, processor, data / "heldout.jsonl", num_frames=8, video_tokens=variant.video_tokens
        )
        size_mb = os.path.getsize(Path(result.final_model_dir) / "model.safetensors") / 1e6
        row = {
            "variant": name,
            "label": variant.label,
            **scores,
            "train_minutes": minutes,
            "size_mb": size_mb,
            "final_loss": result.losses[-1],
        }
        rows.append(row)
        logging.info("%s: %s", name, json.dumps(row))
        (work / f"{name}_scores.json").write_text(json.dumps(row, indent=2))
        if name == args.install:
            if ASSET_DIR.exists():
                shutil.rmtree(ASSET_DIR)
            # the package ships the model code itself: the assets hold weights, configuration and processor only
            shutil.copytree(result.final_model_dir, ASSET_DIR, ignore=shutil.ignore_patterns("*.py"))
            logging.info("Installed %s into %s", result.final_model_dir, ASSET_DIR)
    print(markdown_table(rows))


def markdown_table(rows) -> str:
    types = ["colour", "shape", "direction", "count"]
    lines = [
        "| video tokens given to the LLM | tokens / video | accuracy | " + " | ".join(types) + " | train time (min) |",
        "|---|---:|---:|" + "---:|" * len(types) + "---:|",
    ]
    for row in rows:
        per_type = " | ".join(f"{100 * row['per_type'].get(kind, float('nan')):.1f} %" for kind in types)
        lines.append(
            f"| {row['label']} | {row['visual_tokens']:.0f} | {100 * row['accuracy']:.1f} % | {per_type} | "
            f"{row['train_minutes']:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
