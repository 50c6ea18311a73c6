"""
A synthetic video question-answering set in the LLaVA-Video-178K format, for tests, smoke runs and the built-in
default model.

Every clip shows 1 to 4 identical objects (same shape, same colour) sliding in one direction over a dark background.
Each record asks one question whose one-word answer can only be read from the video:

=============  ==========================================  =================================
question type  question                                    answers
=============  ==========================================  =================================
``colour``     "what colour is the shape ?"                red, green, blue, yellow
``shape``      "what shape is it ?"                        square, circle, triangle, diamond
``direction``  "which way does it move ?"                  left, right, up, down
``count``      "how many objects are there ?"              one, two, three, four
=============  ==========================================  =================================

Chance is 25 % for every question type. Clips are written as video files (PyAV) next to a JSONL file whose records
look like LLaVA-Video-178K's: ``{"id", "video", "conversations": [{"from": "human", "value": "<image>\\n..."},
{"from": "gpt", "value": "..."}, ...], "question_types"}``. A record asks one question, or several in one multi-turn
conversation (`multi_turn=True`: one video encoding then trains on every answer); `question_types` lists the types of
its turns in order.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..synthetic import COLOURS, DIRECTIONS, SHAPES, ClipSpec, random_spec, render_clip, write_clip


logger = logging.getLogger(__name__)

COUNTS = ("one", "two", "three", "four")
QUESTION_TYPES = ("colour", "shape", "direction", "count")
QUESTIONS = {
    "colour": "what colour is the shape ?",
    "shape": "what shape is it ?",
    "direction": "which way does it move ?",
    "count": "how many objects are there ?",
}
ANSWERS = {"colour": tuple(COLOURS), "shape": SHAPES, "direction": DIRECTIONS, "count": COUNTS}


def answer(spec: ClipSpec, question_type: str) -> str:
    """The one-word answer to a question of `question_type` about the clip of `spec`."""
    if question_type == "colour":
        return spec.colour
    if question_type == "shape":
        return spec.shape
    if question_type == "direction":
        return spec.direction
    if question_type == "count":
        return COUNTS[spec.count - 1]
    raise ValueError(f"Unknown question type {question_type!r}; expected one of {QUESTION_TYPES}.")


def make_record(record_id: str, video: str, question_types: list[str], spec: ClipSpec) -> dict:
    """One record in the LLaVA-Video-178K conversation format, asking `question_types` in that order (one turn each;
    the video tag opens the first)."""
    conversations = []
    for turn, question_type in enumerate(question_types):
        tag = "<image>\n" if turn == 0 else ""
        conversations.append({"from": "human", "value": tag + QUESTIONS[question_type]})
        conversations.append({"from": "gpt", "value": answer(spec, question_type)})
    return {
        "id": record_id,
        "video": video,
        "conversations": conversations,
        "question_types": list(question_types),
        "clip": asdict(spec),
    }


def generate_synthetic_dataset(
    output_dir: str | Path,
    num_clips: int = 64,
    *,
    questions_per_clip: int = 1,
    multi_turn: bool = False,
    question_types: tuple[str, ...] = QUESTION_TYPES,
    num_frames: int = 16,
    size: int = 64,
    fps: int = 8,
    seed: int = 0,
    split: str = "train",
    codec: str | None = None,
) -> Path:
    """
    Writes `num_clips` synthetic clips to `output_dir/videos/` and their questions to `output_dir/<split>.jsonl`.

    Args:
        num_clips: number of clips; each is asked `questions_per_clip` distinct question types, drawn at random.
        multi_turn: ask a clip's questions in one multi-turn record (in random order) instead of one record each.
        question_types: which question types to ask.
        num_frames, size, fps: length, side in pixels and frame rate of every clip.
        seed: the clips' frames, questions and answers are a function of this seed (and of the other arguments);
            libx264 may still encode a few frames a pixel value or two differently from run to run.
        split: name of the JSONL file, and prefix of the clip files (so splits can share a folder).
        codec: video encoder (`None` picks the first available of libx264, mpeg4, mjpeg).

    Returns:
        the path of the JSONL file. Video paths in it are relative to `output_dir`.
    """
    for question_type in question_types:
        if question_type not in QUESTION_TYPES:
            raise ValueError(f"Unknown question type {question_type!r}; expected some of {QUESTION_TYPES}.")
    if not 1 <= questions_per_clip <= len(question_types):
        raise ValueError(f"questions_per_clip must lie in 1..{len(question_types)}, got {questions_per_clip}.")
    output_dir = Path(output_dir)
    (output_dir / "videos").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    records = []
    for clip_index in range(num_clips):
        spec = random_spec(rng)
        relative = f"videos/{split}_{clip_index:06d}.mp4"
        write_clip(output_dir / relative, render_clip(spec, num_frames=num_frames, height=size), fps=fps, codec=codec)
        chosen = [
            question_types[index]
            for index in rng.choice(len(question_types), size=questions_per_clip, replace=False).tolist()
        ]
        if multi_turn:
            records.append(make_record(f"{split}-{clip_index}", relative, chosen, spec))
        else:
            for question_type in sorted(chosen, key=question_types.index):
                records.append(make_record(f"{split}-{clip_index}-{question_type}", relative, [question_type], spec))
    path = output_dir / f"{split}.jsonl"
    with open(path, "w") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    logger.info("Wrote %d clips and %d records to %s", num_clips, len(records), path)
    return path


def main(argv: list[str] | None = None) -> int:
    """`python -m vqtoken.training.synthetic_data OUTPUT_DIR`: writes a train and an eval split."""
    import argparse

    parser = argparse.ArgumentParser(description="Write the synthetic video QA set (clips + LLaVA-Video JSONL).")
    parser.add_argument("output_dir", nargs="?", default="data/synthetic")
    parser.add_argument("--train-clips", type=int, default=256)
    parser.add_argument("--eval-clips", type=int, default=64)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--questions-per-clip", type=int, default=1, help="training questions per clip (1-4)")
    parser.add_argument(
        "--multi-turn",
        action="store_true",
        help="ask a training clip's questions in one multi-turn record instead of one record each",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    generate_synthetic_dataset(
        args.output_dir,
        args.train_clips,
        questions_per_clip=args.questions_per_clip,
        multi_turn=args.multi_turn,
        num_frames=args.frames,
        size=args.size,
        seed=args.seed,
        split="train",
    )
    generate_synthetic_dataset(
        args.output_dir, args.eval_clips, num_frames=args.frames, size=args.size, seed=args.seed + 1, split="eval"
    )
    return 0


__all__ = [
    "ANSWERS",
    "COUNTS",
    "QUESTIONS",
    "QUESTION_TYPES",
    "answer",
    "generate_synthetic_dataset",
    "make_record",
    "random_spec",
]


if __name__ == "__main__":
    raise SystemExit(main())
