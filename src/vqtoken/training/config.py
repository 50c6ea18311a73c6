"""
Configuration of a training run: a YAML file with five sections, each a dataclass, plus `section.key=value`
overrides from the command line.

```yaml
model:   {name_or_path: tiny, vqtoken: {vqtoken_mode: attention, vqtoken_max_clusters: 15}}
data:    {train_files: [data/train.jsonl], eval_files: [data/eval.jsonl], num_frames: 8}
train:   {parts: {vq_attention: 1.0e-5, vision_tower: 2.0e-6, language_model: 1.0e-5}, max_steps: 100}
lora:    {enabled: false}
logging: {output_dir: runs/demo, log_every: 10}
```
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


PARTS = ("vq_attention", "projector", "vision_tower", "language_model")


class TrainingConfigError(ValueError):
    """A training configuration (YAML file or override) that cannot be used; the message names the key."""


@dataclass
class ModelArgs:
    """
    name_or_path: a converted VQToken folder or Hub id, a stock LLaVA-OneVision checkpoint (the VQ-Attention then
        starts from its initialisation), or `"tiny"` for a small random model built offline (see `tiny`).
    vqtoken: `vqtoken_*` configuration fields set on the model (e.g. `vqtoken_mode`, `vqtoken_max_clusters`).
    tiny: sizes of the `"tiny"` model: image_size, patch_size, hidden_size, text_layers, vision_hidden_size,
        vision_layers, seed.
    video_tokens: `"model"` (what the configured `vqtoken_mode` gives) or `"full"` (every projected token of every
        frame plus the newline, no compression: a baseline).
    """

    name_or_path: str = "tiny"
    vqtoken: dict[str, Any] = field(default_factory=dict)
    tiny: dict[str, Any] = field(default_factory=dict)
    video_tokens: str = "model"


@dataclass
class DataArgs:
    """
    train_files / eval_files: local JSON or JSONL files in the LLaVA-Video-178K conversation format.
    hub_dataset / hub_config / train_split / eval_split: a Hub dataset instead (loaded with `datasets.load_dataset`).
    video_root: folder that relative `video` paths start from (default: the folder of each data file).
    num_frames: frames sampled uniformly from each video.
    max_train_samples / max_eval_samples: keep only the first N records (after skipping bad ones).
    """

    train_files: list[str] = field(default_factory=list)
    eval_files: list[str] = field(default_factory=list)
    hub_dataset: str | None = None
    hub_config: str | None = None
    train_split: str = "train"
    eval_split: str | None = None
    video_root: str | None = None
    num_frames: int = 8
    num_workers: int = 0
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    check_videos_exist: bool = True


@dataclass
class TrainArgs:
    """
    parts: the parts that train, each with its own learning rate; the rest is frozen.
    per_device_batch_size * gradient_accumulation_steps * num_processes = the global batch.
    Either max_steps (optimizer steps) or num_epochs; max_steps wins when both are set.
    mixed_precision: "no", "bf16" or "fp16" (through `accelerate`).
    """

    parts: dict[str, float] = field(default_factory=lambda: {"vq_attention": 1e-5})
    per_device_batch_size: int = 1
    gradient_accumulation_steps: int = 1
    max_steps: int | None = None
    num_epochs: float = 1.0
    warmup_steps: int = 0
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    max_grad_norm: float | None = 1.0
    lr_scheduler: str = "cosine"
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    seed: int = 0
    eval_every: int | None = None
    save_every: int | None = None
    save_total_limit: int | None = None
    resume_from: str | None = None
    save_final_model: bool = True


@dataclass
class LoraArgs:
    """LoRA adapters on the language model's linear layers (peft). With LoRA, `language_model` in `train.parts`
    gives the adapters' learning rate and the base weights stay frozen."""

    enabled: bool = False
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    merge_on_save: bool = True


@dataclass
class LoggingArgs:
    output_dir: str = "runs/vqtoken"
    log_every: int = 10
    tensorboard: bool = True
    jsonl: bool = True


@dataclass
class TrainingConfig:
    model: ModelArgs = field(default_factory=ModelArgs)
    data: DataArgs = field(default_factory=DataArgs)
    train: TrainArgs = field(default_factory=TrainArgs)
    lora: LoraArgs = field(default_factory=LoraArgs)
    logging: LoggingArgs = field(default_factory=LoggingArgs)

    def validate(self) -> "TrainingConfig":
        unknown = set(self.train.parts) - set(PARTS)
        if unknown:
            raise TrainingConfigError(f"Unknown parts {sorted(unknown)} in train.parts; choose among {PARTS}.")
        if not self.train.parts:
            raise TrainingConfigError("train.parts is empty: name at least one part to train.")
        if self.train.mixed_precision not in ("no", "bf16", "fp16"):
            raise TrainingConfigError(
                f"train.mixed_precision must be 'no', 'bf16' or 'fp16', got {self.train.mixed_precision!r}."
            )
        if self.model.video_tokens not in ("model", "full"):
            raise TrainingConfigError(
                f"model.video_tokens must be 'model' or 'full', got {self.model.video_tokens!r}."
            )
        if self.lora.enabled and "language_model" not in self.train.parts:
            raise TrainingConfigError("lora.enabled needs a learning rate for `language_model` in train.parts.")
        if self.train.per_device_batch_size < 1 or self.train.gradient_accumulation_steps < 1:
            raise TrainingConfigError("per_device_batch_size and gradient_accumulation_steps must be >= 1.")
        if not self.data.train_files and not self.data.hub_dataset:
            raise TrainingConfigError("Give data.train_files or data.hub_dataset.")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainingConfig":
        sections = {}
        for section in dataclasses.fields(cls):
            given = dict(values.get(section.name) or {})
            section_class = section.default_factory().__class__
            names = {f.name for f in dataclasses.fields(section_class)}
            unknown = set(given) - names
            if unknown:
                raise TrainingConfigError(
                    f"Unknown keys {sorted(unknown)} in section {section.name!r}; known: {sorted(names)}."
                )
            sections[section.name] = section_class(**given)
        unknown_sections = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown_sections:
            raise TrainingConfigError(
                f"Unknown sections {sorted(unknown_sections)}; known: model, data, train, lora, logging."
            )
        return cls(**sections)


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """
    Applies `section.key=value` (or deeper, `train.parts.vision_tower=2e-6`) overrides to a nested dict. Values are
    parsed as YAML, so `8`, `1e-5`, `true`, `null` and `[a, b]` get their types.
    """
    values = {key: dict(value) if isinstance(value, dict) else value for key, value in values.items()}
    for override in overrides:
        if "=" not in override:
            raise TrainingConfigError(f"Override {override!r} is not of the form section.key=value.")
        dotted, raw = override.split("=", 1)
        keys = dotted.strip().split(".")
        if len(keys) < 2:
            raise TrainingConfigError(f"Override {override!r} must name a section and a key, e.g. train.max_steps=10.")
        value = yaml.safe_load(raw) if raw.strip() else None
        node = values
        for key in keys[:-1]:
            child = node.get(key)
            node[key] = dict(child) if isinstance(child, dict) else {}
            node = node[key]
        node[keys[-1]] = value
    return values


def _maybe_number(text: str):
    """YAML 1.1 reads `1e-5` as a string; read it as a float."""
    try:
        return float(text) if any(c in text for c in ".eE") and not text.isalpha() else text
    except ValueError:
        return text


def _numbers(node):
    if isinstance(node, dict):
        return {key: _numbers(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_numbers(value) for value in node]
    if isinstance(node, str):
        return _maybe_number(node)
    return node


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainingConfig:
    """Reads a YAML training configuration (or starts from the defaults) and applies `section.key=value` overrides.
    Relative data paths in the file are taken relative to the file's folder."""
    values: dict = {}
    if path is not None:
        path = Path(path)
        with open(path) as handle:
            values = yaml.safe_load(handle) or {}
        data = values.get("data") or {}
        for key in ("train_files", "eval_files"):
            if data.get(key):
                files = [data[key]] if isinstance(data[key], str) else data[key]
                data[key] = [str(f) if Path(f).is_absolute() else str((path.parent / f).resolve()) for f in files]
        values = {**values, "data": data} if data else values
    values = _numbers(apply_overrides(values, overrides or []))
    data = values.get("data") or {}
    for key in ("train_files", "eval_files"):
        if isinstance(data.get(key), str):
            data[key] = [data[key]]
    return TrainingConfig.from_dict(values).validate()


__all__ = [
    "DataArgs",
    "LoggingArgs",
    "LoraArgs",
    "ModelArgs",
    "PARTS",
    "TrainArgs",
    "TrainingConfig",
    "apply_overrides",
    "load_config",
]
