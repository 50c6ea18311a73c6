"""Accuracy of a model on synthetic video questions: greedy answers compared with the expected word."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import torch

from ..modeling.video_io import load_video
from ..modeling.vqtoken_inference import answer_prompts, video_prompt


@torch.no_grad()
def evaluate_synthetic(
    model,
    processor,
    jsonl: str | Path,
    num_frames: int = 8,
    video_tokens: str = "model",
    batch_size: int = 16,
    max_records: int | None = None,
    max_new_tokens: int = 10,
) -> dict:
    """
    Asks the first question of every record of a synthetic JSONL file (see [`~vqtoken.training.synthetic_data`]) and
    scores the greedy answer (first word, case-insensitive) against the expected one. `max_new_tokens` must cover the
    longest answer (the tiny tokenizer writes each synthetic answer as one token, but another tokenizer may not).

    Returns:
        `{"accuracy", "per_type": {type: accuracy}, "visual_tokens": mean tokens per video, "count"}`.
    """
    model.eval()
    jsonl = Path(jsonl)
    records = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    if max_records is not None:
        records = records[:max_records]
    correct, total = defaultdict(int), defaultdict(int)
    visual = []
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        videos = [load_video(jsonl.parent / record["video"], num_frames=num_frames) for record in chunk]
        questions = [record["conversations"][0]["value"].replace("<image>\n", "") for record in chunk]
        prompts = [video_prompt(processor, question) for question in questions]
        answers = answer_prompts(model, processor, prompts, videos, max_new_tokens, video_tokens=video_tokens)
        visual += [answer.visual_tokens for answer in answers]
        for record, answer in zip(chunk, answers):
            kind = record.get("question_types", ["all"])[0]
            expected = record["conversations"][1]["value"].strip().lower()
            words = answer.answer.strip().lower().split()
            correct[kind] += int(bool(words) and words[0] == expected)
            total[kind] += 1
    per_type = {kind: correct[kind] / total[kind] for kind in sorted(total)}
    return {
        "accuracy": sum(correct.values()) / max(sum(total.values()), 1),
        "per_type": per_type,
        "visual_tokens": sum(visual) / max(len(visual), 1),
        "count": sum(total.values()),
    }


__all__ = ["evaluate_synthetic"]
