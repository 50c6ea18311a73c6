"""
A small lmms-eval task over synthetic clips, written offline: for smoke runs of `vqtoken_hf`, its tests and its
benchmark.

The clips are those the built-in default model was trained on (`vqtoken.training.synthetic_data`: shapes of one colour
sliding over a dark background; questions on colour, shape, direction and count), so the default model scores well
above chance on them. Each clip has `CLIP_FRAMES` frames: with the default model's 8 frames, `(29 - 1) / (8 - 1)` is
whole, so lmms-eval's decord loader (`linspace(...).astype(int)`) and VQToken's PyAV loader (`rint(linspace(...))`)
pick the same frames and a comparison with lmms-eval's `llava_hf` compares models, not samplers.

`python -m vqtoken.evaluation.synthetic_task FOLDER [--docs N]` writes the task `vqtoken_synthetic` into `FOLDER`;
run it with `lmms-eval --include_path FOLDER --tasks vqtoken_synthetic ...`.
"""

import argparse
import json
import sys
import textwrap
from pathlib import Path

import numpy as np


NUM_FRAMES = 8
CLIP_FRAMES = 29
CLIP_SIZE = 64
DEFAULT_TASK = "vqtoken_synthetic"

TASK_UTILS = '''
"""Functions of a synthetic-clip task (written by vqtoken.evaluation.synthetic_task)."""


def doc_to_visual(doc):
    return [doc["video"]]


def image_doc_to_visual(doc):
    from PIL import Image

    return [Image.open(doc["image"]).convert("RGB")]


def text_doc_to_visual(doc):
    return []


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["question"]


def doc_to_choice(doc):
    return doc["choices"]


def process_results(doc, results):
    return {"accuracy": float(results[0].strip() == doc["answer"])}


def multi_round_doc_to_text(doc, lmms_eval_specific_kwargs=None, previous_output=None, round_idx=None,
                            previous_round_info=None):
    """Round 0 asks `question`, round 1 `second_question` about the same video, then the request ends."""
    if round_idx is None:
        return doc["question"]
    if round_idx == 1:
        return [doc["video"]], doc["second_question"], False, previous_output, None
    return None, None, True, previous_output, None


def multi_round_process_results(doc, results):
    rounds = results[0]
    return {"accuracy": float(rounds[0].strip() == doc["answer"] and rounds[1].strip() == doc["second_answer"])}
'''


def write_clips(folder: Path, num_clips: int, seed: int = 0) -> list[tuple[Path, Path, object]]:
    """
    `num_clips` synthetic clips (`CLIP_FRAMES` frames of `CLIP_SIZE` px) written with PyAV, each with its middle frame
    as a PNG image: `(video, image, ClipSpec)`.
    """
    from PIL import Image

    from vqtoken.synthetic import random_spec, render_clip, write_clip

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    clips = []
    for index in range(num_clips):
        spec = random_spec(rng)
        frames = render_clip(spec, num_frames=CLIP_FRAMES, height=CLIP_SIZE)
        video = write_clip(folder / f"clip{index}.mp4", frames).resolve()
        image = video.with_suffix(".png")
        Image.fromarray(frames[CLIP_FRAMES // 2]).save(image)
        clips.append((video, image, spec))
    return clips


TASK_OUTPUTS = {
    "generate_until": """
        output_type: generate_until
        generation_kwargs:
          max_new_tokens: 4
          temperature: 0
          do_sample: false
          until: ["<|im_end|>"]
        process_results: !function utils.process_results
        metric_list:
          - metric: accuracy
            aggregation: mean
            higher_is_better: true
    """,
    "multiple_choice": """
        output_type: multiple_choice
        target_delimiter: ""
        doc_to_choice: !function utils.doc_to_choice
        metric_list:
          - metric: acc
            aggregation: mean
            higher_is_better: true
    """,
    "generate_until_multi_round": """
        output_type: generate_until_multi_round
        doc_to_text: !function utils.multi_round_doc_to_text
        generation_kwargs:
          max_new_tokens: 4
          temperature: 0
          do_sample: false
        process_results: !function utils.multi_round_process_results
        metric_list:
          - metric: accuracy
            aggregation: mean
            higher_is_better: true
    """,
}


VISUALS = {"video": "doc_to_visual", "image": "image_doc_to_visual", "text": "text_doc_to_visual"}


def write_task(
    root: Path, name: str, num_docs: int = 8, output_type: str = "generate_until", visual: str = "video"
) -> Path:
    """
    Writes `num_docs` clips and an lmms-eval task `name` over them into `root/name`: one question per clip (the four
    question types in turn; the multiple-choice form offers the four answers of its type, the multi-round form asks a
    second question). `visual`: the task shows the clip (`"video"`), its middle frame as a PNG image (`"image"`), or
    nothing (`"text"`). Returns the folder to pass as `include_path`.
    """
    from vqtoken.training.synthetic_data import ANSWERS, QUESTION_TYPES, QUESTIONS, answer

    folder = root / name
    clips = write_clips(folder / "videos", num_docs)
    with (folder / "docs.jsonl").open("w") as docs:
        for index, (video, image, spec) in enumerate(clips):
            question_type = QUESTION_TYPES[index % len(QUESTION_TYPES)]
            second_type = QUESTION_TYPES[(index + 1) % len(QUESTION_TYPES)]
            doc = {
                "video": str(video),
                "image": str(image),
                "question": QUESTIONS[question_type],
                "answer": answer(spec, question_type),
                "choices": list(ANSWERS[question_type]),
                "second_question": QUESTIONS[second_type],
                "second_answer": answer(spec, second_type),
            }
            docs.write(json.dumps(doc) + "\n")
    (folder / "utils.py").write_text(TASK_UTILS)
    header = f"""
        task: {name}
        dataset_path: json
        dataset_kwargs:
          data_files:
            test: {(folder / "docs.jsonl").resolve()}
        test_split: test
        doc_to_visual: !function utils.{VISUALS[visual]}
        doc_to_text: !function utils.doc_to_text
        doc_to_target: answer
    """
    config = textwrap.dedent(header) + textwrap.dedent(TASK_OUTPUTS[output_type])
    if output_type == "generate_until_multi_round":  # its own doc_to_text replaces the single-round one
        config = config.replace("doc_to_text: !function utils.doc_to_text\n", "", 1)
    (folder / f"{name}.yaml").write_text(config)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vqtoken.evaluation.synthetic_task",
        description="Writes a small lmms-eval task over synthetic clips (offline), for smoke runs of vqtoken_hf.",
    )
    parser.add_argument("folder", type=Path, help="folder to write the task into (pass it as --include_path)")
    parser.add_argument("--docs", type=int, default=8, help="number of clips and questions (default 8)")
    parser.add_argument("--name", default=DEFAULT_TASK, help=f"task name (default {DEFAULT_TASK})")
    args = parser.parse_args(argv)
    if args.docs < 1:
        parser.error(f"--docs must be at least 1, got {args.docs}")
    write_task(args.folder, args.name, num_docs=args.docs)
    print(f"Wrote the task {args.name} ({args.docs} clips): --include_path {args.folder} --tasks {args.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
