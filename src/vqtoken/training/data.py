"""
Video conversation data for training: the LLaVA-Video-178K format through `datasets`, decoding with the project's PyAV
loader inside dataloader workers, and a collator whose labels keep only the answer tokens.

A record is `{"video": "path/to/clip.mp4", "conversations": [{"from": "human", "value": "<image>\\nquestion"},
{"from": "gpt", "value": "answer"}, ...]}` (more turns may follow). The visual tag (`<image>` or `<video>`) is dropped
from the text; the video goes into the first user turn, which the chat template renders as the processor expects.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path

import torch

from ..modeling.video_io import FRAME_LAYOUT, load_video
from .config import TrainingConfigError


logger = logging.getLogger(__name__)

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
VISUAL_TAGS = ("<image>", "<video>")
IGNORE_INDEX = -100


def _skip_reason(record: dict, check_videos_exist: bool) -> str | None:
    video = record.get("video")
    if not video:
        return "no video field"
    if check_videos_exist and not os.path.isfile(video):
        return "missing video file"
    conversations = record.get("conversations") or []
    if not conversations:
        return "empty conversation"
    roles = [ROLES.get(str(turn.get("from", "")).lower()) for turn in conversations]
    if None in roles:
        return "unknown speaker"
    if "assistant" not in roles or "user" not in roles:
        return "no question or no answer"
    if any(not str(turn.get("value") or "").strip() for turn in conversations):
        return "empty turn"
    return None


def load_conversation_records(
    files: list[str] | None = None,
    *,
    hub_dataset: str | None = None,
    hub_config: str | None = None,
    split: str = "train",
    video_root: str | None = None,
    check_videos_exist: bool = True,
    max_samples: int | None = None,
):
    """
    Loads LLaVA-Video-178K style records as a `datasets.Dataset` with the columns `id`, `video` (an absolute path) and
    `conversations`, and skips bad records (no video, missing file, empty conversation, no answer), logging how many
    were skipped and why.

    Args:
        files: local `.json` / `.jsonl` files; relative video paths start from `video_root`, or else from the folder of
            the file.
        hub_dataset, hub_config, split: a Hub dataset instead of files.
        check_videos_exist: skip records whose video file is absent (a stat per record).
        max_samples: keep the first N good records.
    """
    import datasets

    if bool(files) == bool(hub_dataset):
        raise TrainingConfigError("Give either local `files` or a `hub_dataset`.")
    parts = []
    if files:
        for file in files:
            part = datasets.load_dataset("json", data_files=str(file), split="train")
            root = video_root or str(Path(file).resolve().parent)
            parts.append((part, root))
    else:
        part = datasets.load_dataset(hub_dataset, hub_config, split=split)
        parts.append((part, video_root or "."))

    rows, reasons, total = [], Counter(), 0
    for part, root in parts:
        for index, record in enumerate(part):
            total += 1
            record = dict(record)
            video = record.get("video")
            if video and not os.path.isabs(video):
                record["video"] = os.path.join(root, video)
            reason = _skip_reason(record, check_videos_exist)
            if reason is not None:
                reasons[reason] += 1
                continue
            rows.append(
                {
                    "id": str(record.get("id", f"{len(rows)}")),
                    "video": record["video"],
                    "conversations": [
                        {"from": str(turn["from"]), "value": str(turn["value"])} for turn in record["conversations"]
                    ],
                }
            )
    skipped = sum(reasons.values())
    if skipped:
        logger.warning(
            "Skipped %d of %d records: %s",
            skipped,
            total,
            ", ".join(f"{n} {why}" for why, n in sorted(reasons.items())),
        )
    else:
        logger.info("Loaded %d records, none skipped.", total)
    if max_samples is not None:
        rows = rows[:max_samples]
    dataset = (
        datasets.Dataset.from_list(rows)
        if rows
        else datasets.Dataset.from_dict({"id": [], "video": [], "conversations": []})
    )
    dataset.info.description = f"skipped={skipped}"
    return dataset, dict(reasons)


class VideoConversationDataset(torch.utils.data.Dataset):
    """Map-style dataset over conversation records; `__getitem__` decodes the video (in the dataloader worker)."""

    def __init__(self, records, num_frames: int = 8):
        self.records = records
        self.num_frames = num_frames

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict | None:
        record = self.records[index]
        try:
            frames = load_video(record["video"], num_frames=self.num_frames).frames
        except (OSError, ValueError) as error:
            logger.warning("Skipping record %s: cannot decode %s (%s)", record["id"], record["video"], error)
            return None
        return {"id": record["id"], "frames": frames, "conversations": record["conversations"]}


def conversation_messages(conversations: list[dict]) -> list[dict]:
    """Chat messages of one record; the video goes at the head of the first user turn."""
    messages, video_placed = [], False
    for turn in conversations:
        role = ROLES[str(turn["from"]).lower()]
        text = str(turn["value"])
        for tag in VISUAL_TAGS:
            text = text.replace(tag + "\n", "").replace(tag, "")
        text = text.strip()
        if role == "user" and not video_placed:
            messages.append({"role": role, "content": [{"type": "video"}, {"type": "text", "text": text}]})
            video_placed = True
        else:
            messages.append({"role": role, "content": [{"type": "text", "text": text}]})
    return messages


class VideoConversationCollator:
    """
    Turns decoded samples into model inputs: chat template, processor (frames and placeholders), right padding, and
    labels that are -100 everywhere except on the assistant answers (their text and the end-of-turn token).

    Samples that could not be decoded arrive as `None`; they are dropped and counted in `batch["num_skipped"]`.
    """

    def __init__(self, processor, assistant_header: str = "<|im_start|>assistant\n", end_of_turn: str = "<|im_end|>"):
        self.processor = processor
        tokenizer = processor.tokenizer
        self.header_ids = tokenizer.encode(assistant_header, add_special_tokens=False)
        self.end_id = tokenizer.convert_tokens_to_ids(end_of_turn)
        if not self.header_ids or self.end_id is None:
            raise ValueError(
                f"The tokenizer cannot encode the assistant header {assistant_header!r} / {end_of_turn!r}."
            )

    def answer_mask(self, ids: list[int]) -> list[bool]:
        """True on the tokens of every assistant answer, end-of-turn token included."""
        mask = [False] * len(ids)
        header = self.header_ids
        position = 0
        while position <= len(ids) - len(header):
            if ids[position : position + len(header)] == header:
                position += len(header)
                while position < len(ids):
                    mask[position] = True
                    position += 1
                    if ids[position - 1] == self.end_id:
                        break
            else:
                position += 1
        return mask

    def __call__(self, samples: list[dict | None]) -> dict:
        kept = [sample for sample in samples if sample is not None]
        if not kept:
            return {"num_skipped": len(samples)}
        texts = [
            self.processor.apply_chat_template(conversation_messages(sample["conversations"]), tokenize=False)
            for sample in kept
        ]
        batch = self.processor(
            text=texts,
            videos=[sample["frames"] for sample in kept],
            input_data_format=FRAME_LAYOUT,
            padding=True,
            padding_side="right",
            return_tensors="pt",
        )
        labels = torch.full_like(batch["input_ids"], IGNORE_INDEX)
        for row, (ids, attention) in enumerate(zip(batch["input_ids"].tolist(), batch["attention_mask"].tolist())):
            mask = self.answer_mask(ids)
            for position, (keep, real) in enumerate(zip(mask, attention)):
                if keep and real:
                    labels[row, position] = ids[position]
        batch = dict(batch)
        batch["labels"] = labels
        batch["num_skipped"] = len(samples) - len(kept)
        return batch


__all__ = [
    "IGNORE_INDEX",
    "VideoConversationCollator",
    "VideoConversationDataset",
    "conversation_messages",
    "load_conversation_records",
]
