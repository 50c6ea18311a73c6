"""
Scores trained VQToken folders on freshly generated synthetic clips (colour, shape, direction, count; chance 25 %
each), one single-question record per clip and question type, greedy answers. BENCHMARKS.md uses it to re-check the
built-in default on clips that played no part in choosing its recipe:

    python examples/training/score_synthetic.py src/vqtoken/assets/default-model \
        runs/default-model/attention/final runs/default-model/centroids/final --clips 200 --seed 2026
"""

import argparse
import json
import logging
import tempfile

import torch

from vqtoken import VQTokenLlavaOnevisionForConditionalGeneration, VQTokenLlavaOnevisionProcessor
from vqtoken.training.synthetic_data import generate_synthetic_dataset
from vqtoken.training.synthetic_eval import evaluate_synthetic


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dirs", nargs="+", help="VQToken folders (config, weights and processor)")
    parser.add_argument("--clips", type=int, default=200, help="fresh clips, each asked the four question types")
    parser.add_argument("--seed", type=int, default=2026, help="seed of the fresh clips")
    parser.add_argument("--frames", type=int, default=8, help="frames sampled per clip")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as folder:
        jsonl = generate_synthetic_dataset(
            folder, args.clips, questions_per_clip=4, num_frames=16, size=64, seed=args.seed, split="fresh"
        )
        for model_dir in args.model_dirs:
            model = VQTokenLlavaOnevisionForConditionalGeneration.from_pretrained(model_dir).eval()
            processor = VQTokenLlavaOnevisionProcessor.from_pretrained(model_dir)
            scores = evaluate_synthetic(model, processor, jsonl, num_frames=args.frames)
            print(json.dumps({"model": model_dir, **scores}))


if __name__ == "__main__":
    main()
