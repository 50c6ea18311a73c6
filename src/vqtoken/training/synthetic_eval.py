"""Accuracy of a model on synthetic video questions: greedy answers compared with the expected word."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path

import torch

from ..modeling.vqtoken_inference import timed_generate, video_prompt
from ..video_io import FRAME_LAYOUT, load_video
from .modeling import VQTokenTrainingModule


logger = logging.getLogger(__name__)


@torch.no_grad()
def evaluate_synthetic(
    model, processor, jsonl: str | Path, num_frames: int = 8, video_tokens: str = "model", batch_size: int = 16,
    max_records: int | None = None, max_new_tokens: int = 10,
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
    encoder = VQTokenTrainingModule(model, processor.tokenizer.pad_token_id or 0, video_tokens=video_tokens)
    correct, total = defaultdict(int), defaultdict(int)
    visual = []
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        frames = [load_video(jsonl.parent / record["video"], num_frames=num_frames).frames for record in chunk]
        questions = [record["conversations"][0]["value"].replace("<image>\n", "") for record in chunk]
        inputs = processor(text=[video_prompt(processor, q) for q in questions], videos=frames, return_tensors="pt",
                           input_data_format=FRAME_LAYOUT, padding=True, padding_side="left")
        pixel_values_videos = inputs.pop("pixel_values_videos").to(model.dtype)
        if video_tokens == "model" and model.config.vqtoken_mode == "off":
            visual += [int(row.sum()) for row in inputs["input_ids"] == model.config.video_token_id]
            generate_inputs = {"pixel_values_videos": pixel_values_videos}
        else:
            video_outputs = encoder.encode_videos(pixel_values_videos)
            visual += [tokens.shape[0] for tokens in video_outputs.pooler_output]
            generate_inputs = {"video_outputs": video_outputs}
        answers = timed_generate(model, processor, {**inputs, **generate_inputs}, {}, max_new_tokens)
        for record, answer in zip(chunk, answers):
            kind = record.get("question_types", ["all"])[0]
            expected = record["conversations"][1]["value"].strip().lower()
            words = answer.strip().lower().split()
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
