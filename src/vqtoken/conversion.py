# Copyright 2026 The VQToken for Transformers authors. Licensed under the Apache License, Version 2.0.
"""
Conversion of the released VQToken checkpoint (LLaVA-NeXT layout) into a self-contained Transformers folder.

The released weights (`haichaozhang/VQ-Token-llava-ov-0.5b`) use LLaVA-NeXT's parameter names and a LLaVA-style
`config.json` that only names its SigLIP tower. [`convert_checkpoint`] renames every tensor into
[`VQTokenLlavaOnevisionForConditionalGeneration`], builds the configuration from the source configuration, the known
tower (or `--vision-config`) and the tensors, reuses a llava-hf OneVision processor, and writes safetensors, the
remote-code files, the processor, `generation_config.json`, a model card and `conversion_report.json` into a temporary
folder. The result is then reloaded through the Auto classes with `trust_remote_code=True` in a clean process and
compared tensor by tensor with the source; only then is the temporary folder renamed to the output folder.

Command line: `python conversion/convert_vqtoken_to_hf.py --checkpoint ... --output ...` or `vqtoken convert`
([`add_convert_arguments`] / [`run_convert`]).
"""

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .files import hash_stream


logger = logging.getLogger(__name__)

DEFAULT_PROCESSOR = "llava-hf/llava-onevision-qwen2-0.5b-ov-hf"
DEFAULT_MAX_SHARD_SIZE = "2GB"
REPORT_FILE = "conversion_report.json"
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")

# VQ-Attention of the release: `nn.TransformerDecoderLayer(d_model=hidden, nhead=8)` (the head count is not visible
# in the tensors; it is fixed in the released code).
RELEASED_VQ_ATTENTION_HEADS = 8
RELEASED_CROSS_ATTENTION_TENSORS = 20

# SigLIP towers whose sizes the released config only names. `kept_layers`: LLaVA-NeXT drops the last encoder layer
# and the head; the features are the last hidden state of the kept layers, before `post_layernorm`.
KNOWN_VISION_TOWERS = {
    "google/siglip-so400m-patch14-384": {
        "hidden_size": 1152,
        "intermediate_size": 4304,
        "num_attention_heads": 16,
        "patch_size": 14,
        "image_size": 384,
        "kept_layers": 26,
    },
}

# Released name prefix -> our name prefix ("{vision}" is the vision tower prefix of the installed transformers).
RELEASED_PREFIXES = (
    ("model.vision_tower.vision_tower.vision_model.", "{vision}"),
    ("model.mm_projector.0.", "model.multi_modal_projector.linear_1."),
    ("model.mm_projector.2.", "model.multi_modal_projector.linear_2."),
    ("model.embed_tokens.", "model.language_model.embed_tokens."),
    ("model.layers.", "model.language_model.layers."),
    ("model.norm.", "model.language_model.norm."),
    ("lm_head.", "lm_head."),
    ("model.cross_attention.to_q_proj.", "model.vq_attention.to_q_proj."),
    ("model.cross_attention.transformer_decoder.layers.0.", "model.vq_attention.decoder_layer."),
)
RELEASED_EXACT = {"model.image_newline": "model.image_newline"}

# Released tensors the model cannot use by design: dropped, and listed in the conversion report. LLaVA-NeXT replaces the
# SigLIP head by an identity, but a source saved from a stock SigLIP may still carry it.
DROPPED_SOURCE_PREFIXES = ("model.vision_tower.vision_tower.vision_model.head.",)

# The family of the release: LLaVA-NeXT's LLaVA-Qwen. Its `LlavaQwenConfig` writes model_type "llava_qwen"; the
# lmms-lab OneVision base checkpoints say "llava"; older exports kept Qwen2's "qwen2".
SOURCE_ARCHITECTURE = "LlavaQwenForCausalLM"
SOURCE_MODEL_TYPES = ("llava_qwen", "llava", "qwen2")
SOURCE_LAYOUT_KEYS = ("model.mm_projector.0.weight", "model.embed_tokens.weight")

EMBED_KEY = "model.language_model.embed_tokens.weight"
LM_HEAD_KEY = "lm_head.weight"
SOURCE_EMBED_KEY = "model.embed_tokens.weight"
SOURCE_LM_HEAD_KEY = "lm_head.weight"
SOURCE_VISION_PREFIX = "model.vision_tower.vision_tower.vision_model."

# Fields of the LLaVA-Qwen config.json that describe the language model.
TEXT_REQUIRED = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                 "num_key_value_heads")
TEXT_OPTIONAL = ("hidden_act", "max_position_embeddings", "initializer_range", "rms_norm_eps", "use_cache",
                 "rope_theta", "rope_scaling", "use_sliding_window", "sliding_window", "max_window_layers",
                 "attention_dropout", "bos_token_id", "eos_token_id", "pad_token_id")
VISION_FIELDS = ("hidden_size", "intermediate_size", "num_attention_heads", "patch_size", "image_size")


class ConversionError(ValueError):
    """The checkpoint, its configuration or the processor cannot be converted; the message says what and why."""


@dataclass
class ConversionReport:
    """What a conversion produced: written as `conversion_report.json` and printed by the command line."""

    source: str
    source_revision: str | None
    source_files: list[str]
    processor: str
    vision_tower: str
    dtype: str
    tensors_mapped: int
    source_tensors: int
    dropped_tensors: list[str]
    parameters: int
    tied_embeddings: bool
    vqtoken: dict
    files: dict = field(default_factory=dict)  # relative path -> {"size": bytes, "sha256": hex}
    verification: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    def summary(self) -> str:
        lines = [
            f"source            {self.source}" + (f" @ {self.source_revision}" if self.source_revision else ""),
            f"processor         {self.processor}",
            f"vision tower      {self.vision_tower}",
            f"tensors mapped    {self.tensors_mapped} of {self.source_tensors} source tensors"
            + (" (lm_head tied to embed_tokens)" if self.tied_embeddings else ""),
            f"tensors dropped   {len(self.dropped_tensors)}"
            + (f" (not used by the model by design: {', '.join(self.dropped_tensors)})" if self.dropped_tensors else ""),
            f"parameters        {self.parameters:,}",
            f"dtype             {self.dtype}",
            "vqtoken           " + ", ".join(f"{k}={v}" for k, v in sorted(self.vqtoken.items())),
            f"verification      {self.verification.get('status', 'not run')}"
            + (f" ({self.verification['tensors_compared']} tensors compared after a clean remote-code reload)"
               if "tensors_compared" in self.verification else ""),
            "files:",
        ]
        for name, info in sorted(self.files.items()):
            lines.append(f"  {name:<48} {info['size']:>14,d}  sha256 {info['sha256']}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------- reading


def resolve_folder(name_or_path: str, revision: str | None = None, token: str | bool | None = None,
                   allow_patterns: list[str] | None = None) -> Path:
    """A local folder as-is; otherwise a Hub id downloaded with `snapshot_download` (token from the usual login)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ConversionError(f"{name_or_path!r} is a file; expected a folder or a Hub id.")
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise ConversionError(f"Folder {name_or_path!r} does not exist (and it is not a Hub id).")
    from huggingface_hub import snapshot_download

    logger.info("Downloading %s (revision %s) from the Hub", name_or_path, revision or "main")
    try:
        return Path(snapshot_download(name_or_path, revision=revision, token=token, allow_patterns=allow_patterns))
    except Exception as error:  # the Hub client raises many kinds; name the id and the cause
        raise ConversionError(f"Could not download {name_or_path!r} from the Hub: {error}") from error


def read_checkpoint(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """
    All tensors of a checkpoint folder, and the file each came from.

    Reads `model.safetensors`, or the shards of `model.safetensors.index.json`; only when there is no safetensors file
    at all, `pytorch_model.bin` (or its index) through `torch.load(weights_only=True)`.
    """
    from safetensors import safe_open

    safetensors_files = sorted(folder.glob("*.safetensors"))
    index_file = folder / "model.safetensors.index.json"
    if index_file.is_file():
        weight_map = _read_index(index_file)
        files = sorted(set(weight_map.values()))
    elif safetensors_files:
        files, weight_map = [f.name for f in safetensors_files], None
    else:
        return _read_pickle_checkpoint(folder)
    tensors, origin = {}, {}
    for name in files:
        path = folder / name
        if not path.is_file():
            raise ConversionError(f"{path} is listed in model.safetensors.index.json but does not exist.")
        try:
            with safe_open(str(path), framework="pt") as handle:
                for key in handle.keys():
                    if key in tensors:
                        raise ConversionError(f"Tensor {key!r} appears in both {origin[key]} and {name}.")
                    tensors[key] = handle.get_tensor(key)
                    origin[key] = name
        except ConversionError:
            raise
        except Exception as error:
            raise ConversionError(f"Cannot read safetensors file {path} (truncated or corrupt?): {error}") from error
    if weight_map is not None:
        wrong = sorted(k for k, f in weight_map.items() if origin.get(k) != f)
        if wrong:
            raise ConversionError(f"model.safetensors.index.json does not match the shards for {wrong[:10]}.")
    return tensors, origin


def _read_index(index_file: Path) -> dict[str, str]:
    try:
        return json.loads(index_file.read_text())["weight_map"]
    except (ValueError, KeyError) as error:
        raise ConversionError(f"{index_file} is not a valid checkpoint index: {error}") from error


def _read_pickle_checkpoint(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    index_file = folder / "pytorch_model.bin.index.json"
    if index_file.is_file():
        files = sorted(set(_read_index(index_file).values()))
    elif (folder / "pytorch_model.bin").is_file():
        files = ["pytorch_model.bin"]
    else:
        raise ConversionError(f"No model.safetensors, safetensors shards or pytorch_model.bin in {folder}.")
    tensors, origin = {}, {}
    for name in files:
        logger.warning("Reading %s with torch.load(weights_only=True): prefer safetensors.", name)
        try:
            state = torch.load(folder / name, map_location="cpu", weights_only=True)
        except Exception as error:
            raise ConversionError(f"Cannot read {folder / name} with torch.load(weights_only=True): {error}") from error
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ConversionError(f"{folder / name} does not hold a flat dictionary of tensors.")
        for key, value in state.items():
            tensors[key] = value
            origin[key] = name
    return tensors, origin


def read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise ConversionError(f"No {what} at {path}.")
    try:
        return json.loads(path.read_text())
    except ValueError as error:
        raise ConversionError(f"{path} is not valid JSON: {error}") from error


# ----------------------------------------------------------------------------------------------------------- mapping


def vision_prefix_of(model_keys) -> str:
    """Our vision tower prefix: `model.vision_tower.vision_model.` on older Transformers, `model.vision_tower.` now."""
    if any(key.startswith("model.vision_tower.vision_model.") for key in model_keys):
        return "model.vision_tower.vision_model."
    return "model.vision_tower."


def map_released_key(key: str, vision_prefix: str) -> str | None:
    """Our name for a released tensor name, or `None` when the released layout has no such tensor."""
    if key in RELEASED_EXACT:
        return RELEASED_EXACT[key]
    for source, target in RELEASED_PREFIXES:
        if key.startswith(source):
            return target.replace("{vision}", vision_prefix) + key[len(source):]
    return None


def count_vision_layers(tensors: dict[str, torch.Tensor]) -> int:
    """Number of SigLIP encoder layers present in the released tensors (they must be numbered 0..n-1)."""
    pattern = re.compile(re.escape(SOURCE_VISION_PREFIX) + r"encoder\.layers\.(\d+)\.")
    layers = {int(m.group(1)) for key in tensors if (m := pattern.match(key))}
    if not layers:
        raise ConversionError(f"The checkpoint holds no vision encoder layers ({SOURCE_VISION_PREFIX}encoder.layers.*).")
    if layers != set(range(len(layers))):
        raise ConversionError(f"Vision encoder layers are not numbered 0..n-1: found {sorted(layers)}.")
    return len(layers)


def load_vision_config(vision_config: str | None, tower: str, revision: str | None = None,
                       token: str | bool | None = None) -> tuple[dict, int | None, str]:
    """
    Sizes of the SigLIP tower: from `--vision-config` (a JSON file, a folder or a Hub id holding `config.json`; a full
    SigLIP config's `vision_config` is used) or from the table of known towers.

    Returns `(fields, expected_kept_layers or None, description)`; `fields` hold the `VISION_FIELDS` and, for a
    `--vision-config`, the other SigLIP fields it sets (`num_hidden_layers` is the full tower's).
    """
    if vision_config is None:
        if tower not in KNOWN_VISION_TOWERS:
            raise ConversionError(
                f"The checkpoint's vision tower {tower!r} is not one whose sizes the converter knows "
                f"({sorted(KNOWN_VISION_TOWERS)}); the released config.json only names it. Pass --vision-config with "
                "its SigLIP (vision) config: a config.json file, a folder or a Hub id."
            )
        known = dict(KNOWN_VISION_TOWERS[tower])
        kept = known.pop("kept_layers")
        return known, kept, f"{tower} (known tower)"
    path = Path(vision_config).expanduser()
    if path.is_file():
        data = read_json(path, "vision config")
    else:
        folder = resolve_folder(vision_config, token=token, allow_patterns=["config.json"])
        data = read_json(folder / "config.json", "vision config")
    if isinstance(data.get("vision_config"), dict):
        data = data["vision_config"]
    missing = [name for name in VISION_FIELDS if name not in data]
    if missing:
        raise ConversionError(f"--vision-config {vision_config!r} lacks {missing}.")
    if data.get("model_type", "siglip_vision_model") not in ("siglip_vision_model", "siglip"):
        raise ConversionError(f"--vision-config {vision_config!r} is not a SigLIP config (model_type "
                              f"{data.get('model_type')!r}).")
    keep = ("hidden_act", "layer_norm_eps", "attention_dropout", "num_channels", "num_hidden_layers") + VISION_FIELDS
    return {k: data[k] for k in keep if k in data}, None, f"{tower} (sizes from {vision_config})"


def check_source_family(source_config: dict, tensors: dict[str, torch.Tensor]):
    """
    Refuses a checkpoint that is not LLaVA-NeXT's LLaVA-Qwen, judged by `architectures` and the tensor names (the
    model_type has three spellings in the wild, `SOURCE_MODEL_TYPES`).
    """
    architectures = source_config.get("architectures") or []
    if architectures and SOURCE_ARCHITECTURE not in architectures:
        raise ConversionError(
            f"config.json names the architectures {architectures}; the released VQToken checkpoint is LLaVA-NeXT's "
            f"{SOURCE_ARCHITECTURE!r}. A transformers-format (llava-hf) checkpoint needs no conversion: load it "
            "with `vqtoken.loading.load_model_and_processor`."
        )
    model_type = source_config.get("model_type")
    if model_type not in SOURCE_MODEL_TYPES:
        raise ConversionError(
            f"config.json has model_type {model_type!r}; a LLaVA-Qwen checkpoint says one of {SOURCE_MODEL_TYPES}."
        )
    absent = [key for key in SOURCE_LAYOUT_KEYS if key not in tensors]
    if absent or not any(key.startswith(SOURCE_VISION_PREFIX) for key in tensors):
        raise ConversionError(
            f"The tensors are not in LLaVA-NeXT's layout: no {absent or [SOURCE_VISION_PREFIX + '*']} "
            f"(model_type {model_type!r}, architectures {architectures})."
        )


def build_config(source_config: dict, tensors: dict[str, torch.Tensor], processor, vision_fields: dict,
                 expected_kept_layers: int | None, vqtoken_settings: dict, dtype: torch.dtype):
    """
    The [`VQTokenLlavaOnevisionConfig`] of the converted model.

    Text sizes, token ids, rope and grid pinpoints come from the source config; vision sizes from the known tower or
    `--vision-config`, the number of vision layers from the tensors; the placeholder ids from the processor's
    tokenizer (the released config marks images with -200 inside `input_ids`, which a tokenizer cannot produce).
    """
    from .modeling.configuration_vqtoken_llava_onevision import VQTokenLlavaOnevisionConfig

    check_source_family(source_config, tensors)
    missing = [name for name in TEXT_REQUIRED if source_config.get(name) is None]
    if missing:
        raise ConversionError(f"The source config.json lacks the language-model fields {missing}.")
    projector = source_config.get("mm_projector_type")
    if projector != "mlp2x_gelu":
        raise ConversionError(f"Only the 'mlp2x_gelu' projector is supported, the source has {projector!r}.")
    merge = source_config.get("mm_patch_merge_type", "spatial_unpad")
    if merge != "spatial_unpad":
        raise ConversionError(f"Only mm_patch_merge_type 'spatial_unpad' (OneVision) is supported, got {merge!r}.")
    if source_config.get("mm_vision_select_feature", "patch") != "patch":
        raise ConversionError("Only mm_vision_select_feature 'patch' is supported, got "
                              f"{source_config.get('mm_vision_select_feature')!r}.")
    pinpoints = source_config.get("image_grid_pinpoints")
    if not isinstance(pinpoints, list) or not pinpoints:
        raise ConversionError("The source config.json has no image_grid_pinpoints list.")

    kept_layers = count_vision_layers(tensors)
    if expected_kept_layers is not None and kept_layers != expected_kept_layers:
        raise ConversionError(f"The known tower keeps {expected_kept_layers} encoder layers, the checkpoint holds "
                              f"{kept_layers}.")
    full_layers = vision_fields.get("num_hidden_layers")
    if full_layers is not None and kept_layers > full_layers:
        raise ConversionError(f"The checkpoint holds {kept_layers} vision layers, more than the {full_layers} of "
                              "--vision-config.")
    mm_hidden = source_config.get("mm_hidden_size")
    if mm_hidden is not None and mm_hidden != vision_fields["hidden_size"]:
        raise ConversionError(f"mm_hidden_size ({mm_hidden}) differs from the vision hidden size "
                              f"({vision_fields['hidden_size']}).")
    vision_config = {
        **{k: v for k, v in vision_fields.items() if k != "num_hidden_layers"},
        "model_type": "siglip_vision_model",
        "num_hidden_layers": kept_layers,
        "vision_use_head": False,
    }

    text_config = {"model_type": "qwen2"}
    for name in TEXT_REQUIRED + TEXT_OPTIONAL:
        if source_config.get(name) is not None:
            text_config[name] = source_config[name]
    defaulted = [name for name in TEXT_OPTIONAL if source_config.get(name) is None]
    if defaulted:
        logger.info("Source config.json does not set %s: Qwen2 defaults apply.", defaulted)
    tied = bool(source_config.get("tie_word_embeddings", True))
    text_config["tie_word_embeddings"] = tied

    rows = tensors[SOURCE_EMBED_KEY].shape[0] if SOURCE_EMBED_KEY in tensors else None
    if rows is None:
        raise ConversionError(f"The checkpoint has no {SOURCE_EMBED_KEY!r}.")
    if rows != text_config["vocab_size"]:
        raise ConversionError(f"config.json says vocab_size {text_config['vocab_size']} but {SOURCE_EMBED_KEY} has "
                              f"{rows} rows.")
    tokenizer = processor.tokenizer
    token_ids = {}
    for kind, token in (("image", processor.image_token), ("video", processor.video_token)):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == tokenizer.unk_token_id:
            raise ConversionError(f"The processor's tokenizer has no {token!r} token.")
        if not 0 <= token_id < rows:
            raise ConversionError(
                f"The processor's {token!r} id {token_id} does not fit the embedding matrix ({rows} rows). The "
                "converter does not resize embeddings: use a processor whose tokenizer matches the checkpoint."
            )
        token_ids[kind] = token_id
    if len(tokenizer) > rows:
        raise ConversionError(f"The processor's tokenizer has {len(tokenizer)} tokens, more than the {rows} rows of "
                              "the embedding matrix (no silent resize).")

    heads = vqtoken_settings.pop("vqtoken_attention_heads", RELEASED_VQ_ATTENTION_HEADS)
    linear1 = tensors.get("model.cross_attention.transformer_decoder.layers.0.linear1.weight")
    if linear1 is None:
        raise ConversionError("The checkpoint has no VQ-Attention feed-forward "
                              "(model.cross_attention.transformer_decoder.layers.0.linear1.weight).")
    try:
        config = VQTokenLlavaOnevisionConfig(
            vision_config=vision_config,
            text_config=text_config,
            image_token_index=token_ids["image"],
            video_token_index=token_ids["video"],
            projector_hidden_act="gelu",
            multimodal_projector_bias=True,
            vision_feature_layer=-1,
            vision_feature_select_strategy="full",
            vision_aspect_ratio=source_config.get("image_aspect_ratio", "anyres_max_9"),
            image_grid_pinpoints=pinpoints,
            tie_word_embeddings=tied,
            vqtoken_attention_heads=heads,
            vqtoken_attention_intermediate_size=int(linear1.shape[0]),
            **vqtoken_settings,
        )
    except (ValueError, TypeError) as error:
        raise ConversionError(f"Invalid configuration: {error}") from error
    config.dtype = dtype

    to_q = tensors.get("model.cross_attention.to_q_proj.weight")
    if to_q is not None and to_q.shape[-1] != config.vqtoken_tokens_per_frame:
        raise ConversionError(
            f"model.cross_attention.to_q_proj.weight {list(to_q.shape)} takes {to_q.shape[-1]} tokens per frame, but "
            f"the vision config gives {config.vqtoken_tokens_per_frame} ((image_size {vision_config['image_size']} "
            f"// patch_size {vision_config['patch_size']})**2, unpooled): the vision sizes do not fit this checkpoint."
        )
    return config


def map_state_dict(tensors: dict[str, torch.Tensor], model_shapes: dict[str, torch.Size], tied: bool,
                   dtype: torch.dtype) -> tuple[dict[str, torch.Tensor], dict[str, str], list[str]]:
    """
    Renames every source tensor to our name and checks the result against the model.

    Returns `(state_dict, sources, dropped)` where `sources[our_key]` is the source key it was filled from and
    `dropped` the source tensors the model does not use by design (`DROPPED_SOURCE_PREFIXES`). Raises
    [`ConversionError`] naming every other unmapped source tensor, every model tensor left unfilled and every shape
    that does not agree.
    """
    vision_prefix = vision_prefix_of(model_shapes)
    cross = [key for key in tensors if key.startswith("model.cross_attention.")]
    if len(cross) != RELEASED_CROSS_ATTENTION_TENSORS:
        logger.warning("The checkpoint holds %d model.cross_attention.* tensors; the release has %d.", len(cross),
                       RELEASED_CROSS_ATTENTION_TENSORS)
    state, sources, unmapped = {}, {}, []
    dropped = sorted(key for key in tensors if key.startswith(DROPPED_SOURCE_PREFIXES))
    for key, tensor in tensors.items():
        if key in dropped:
            continue
        target = map_released_key(key, vision_prefix)
        if target is None or target not in model_shapes:
            unmapped.append(key if target is None else f"{key} (-> {target}, not a model tensor)")
            continue
        state[target] = tensor
        sources[target] = key
    problems = []
    if unmapped:
        problems.append(f"{len(unmapped)} source tensor(s) have no place in the model: {sorted(unmapped)}")
    if SOURCE_LM_HEAD_KEY in tensors and tied:
        if not torch.equal(tensors[SOURCE_LM_HEAD_KEY], tensors.get(SOURCE_EMBED_KEY)):
            problems.append("config.json ties the embeddings but lm_head.weight differs from model.embed_tokens.weight")
        state.pop(LM_HEAD_KEY, None)
        sources.pop(LM_HEAD_KEY, None)
    if tied and EMBED_KEY in state:
        state[LM_HEAD_KEY] = state[EMBED_KEY]
        sources[LM_HEAD_KEY] = SOURCE_EMBED_KEY
    if not tied and SOURCE_LM_HEAD_KEY not in tensors:
        problems.append("config.json sets tie_word_embeddings=false but the checkpoint has no lm_head.weight")
    unfilled = sorted(set(model_shapes) - set(state))
    if unfilled:
        problems.append(f"{len(unfilled)} model tensor(s) left unfilled: {unfilled}")
    wrong = sorted(
        f"{sources[key]} {list(state[key].shape)} -> {key} {list(model_shapes[key])}"
        for key in state if key in model_shapes and state[key].shape != model_shapes[key]
    )
    if wrong:
        problems.append(f"{len(wrong)} shape(s) do not agree with the configuration: {wrong}")
    not_float = sorted(key for key, tensor in tensors.items() if not tensor.is_floating_point() and key not in dropped)
    if not_float:
        problems.append(f"non-floating-point tensors: {not_float}")
    if problems:
        raise ConversionError("The checkpoint does not fit the released VQToken layout:\n  - " + "\n  - ".join(problems))
    if dropped:
        logger.info("Dropped %d source tensors the model does not use: %s", len(dropped), dropped)
    return {key: tensor.to(dtype) for key, tensor in state.items()}, sources, dropped


def resolve_dtype(name: str, tensors: dict[str, torch.Tensor]) -> torch.dtype:
    if name != "keep":
        if name not in DTYPES:
            raise ConversionError(f"--dtype must be keep or one of {sorted(DTYPES)}, got {name!r}.")
        return DTYPES[name]
    dtypes = {tensor.dtype for tensor in tensors.values() if tensor.is_floating_point()}
    if len(dtypes) != 1:
        raise ConversionError(f"The checkpoint mixes dtypes {sorted(map(str, dtypes))}: pass --dtype explicitly.")
    return dtypes.pop()


# --------------------------------------------------------------------------------------------------------- processor


def load_source_processor(processor_folder: Path, name: str):
    """The llava-hf OneVision processor whose tokenizer, chat template and image/video processors are reused."""
    from transformers import AutoProcessor

    try:
        source = AutoProcessor.from_pretrained(str(processor_folder))
    except Exception as error:
        raise ConversionError(f"Cannot load a processor from {name!r}: {error}") from error
    for part in ("tokenizer", "image_processor", "video_processor"):
        if getattr(source, part, None) is None:
            raise ConversionError(f"The processor {name!r} has no {part} (is it a OneVision processor?).")
    if source.chat_template is None:
        raise ConversionError(f"The processor {name!r} has no chat template.")
    return source


def build_processor(source, config, image_aspect_ratio: str | None):
    """The VQToken processor from a llava-hf OneVision processor: tokenizer, chat template and image/video processors
    are reused; the placeholder count follows the VQ settings of `config`."""
    from .modeling.processing_vqtoken_llava_onevision import VQTokenLlavaOnevisionProcessor

    image_size = config.vision_config.image_size
    for part in ("image_processor", "video_processor"):
        size = getattr(getattr(source, part), "size", None)
        size = dict(size) if size is not None else {}
        sides = {size.get("height"), size.get("width")} - {None}
        if sides and sides != {image_size}:
            raise ConversionError(f"The processor's {part} resizes to {size}, the vision tower expects "
                                  f"{image_size}x{image_size}.")
    source.image_processor.image_grid_pinpoints = [list(p) for p in config.image_grid_pinpoints]
    return VQTokenLlavaOnevisionProcessor.from_onevision_processor(
        source,
        vqtoken_mode=config.vqtoken_mode,
        vqtoken_max_clusters=config.vqtoken_max_clusters,
        num_image_tokens=(image_size // config.vision_config.patch_size) ** 2,
        vision_feature_select_strategy=config.vision_feature_select_strategy,
        vision_aspect_ratio=image_aspect_ratio or "anyres_max_9",
    )


def build_generation_config(folders: list[Path], config, tokenizer=None):
    """`generation_config.json` of the source checkpoint, else of the processor repository, else from the config."""
    from transformers import GenerationConfig

    for folder in folders:
        if (folder / "generation_config.json").is_file():
            logger.info("Using the generation config of %s", folder)
            return GenerationConfig.from_pretrained(str(folder))
    text = config.text_config
    pad = text.pad_token_id if text.pad_token_id is not None else getattr(tokenizer, "pad_token_id", None)
    return GenerationConfig(bos_token_id=text.bos_token_id, eos_token_id=text.eos_token_id, pad_token_id=pad)


# ---------------------------------------------------------------------------------------------------- verification

VERIFY_SCRIPT = textwrap.dedent(
    """
    import json, sys
    spec = json.load(open(sys.argv[1]))
    for name in spec["block_modules"]:
        sys.modules[name] = None  # as if not installed: the folder's own code must be used
    import torch
    torch.set_num_threads(1)
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor
    folder = spec["folder"]
    result = {}
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    dtype = getattr(torch, spec["dtype"])
    model, info = AutoModelForImageTextToText.from_pretrained(
        folder, trust_remote_code=True, dtype=dtype, output_loading_info=True)
    problems = [f"{k}: {sorted(v)}" for k, v in info.items() if k != "error_msgs" and v] + list(info["error_msgs"])
    result["model_class"] = type(model).__module__ + "." + type(model).__qualname__
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    result["processor_class"] = type(processor).__module__ + "." + type(processor).__qualname__
    if processor.vqtoken_mode != config.vqtoken_mode or processor.vqtoken_max_clusters != config.vqtoken_max_clusters:
        problems.append("processor VQ settings differ from config.json")
    for kind in ("image", "video"):
        if processor.tokenizer.convert_tokens_to_ids(getattr(processor, kind + "_token")) != getattr(config, kind + "_token_id"):
            problems.append(kind + " token id of the processor differs from config.json")
    state = model.state_dict()
    compared = 0
    if spec.get("sources") is not None:
        from safetensors import safe_open
        handles, pickles = {}, {}
        def source_tensor(file, key):
            path = spec["source_folder"] + "/" + file
            if file.endswith(".safetensors"):
                if path not in handles:
                    handles[path] = safe_open(path, framework="pt")
                return handles[path].get_tensor(key)
            if path not in pickles:
                pickles[path] = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            return pickles[path][key]
        extra = sorted(set(state) - set(spec["sources"]))
        if extra:
            problems.append(f"reloaded model has tensors without a source: {extra}")
        for key, (file, source_key) in sorted(spec["sources"].items()):
            if key not in state:
                problems.append(f"{key} missing after reload")
                continue
            expected = source_tensor(file, source_key).to(dtype)
            if state[key].dtype != dtype or state[key].shape != expected.shape or not torch.equal(state[key], expected):
                problems.append(f"{key} differs from source {source_key}")
            compared += 1
    result["tensors_compared"] = compared
    result["tensors_loaded"] = len(state)
    result["problems"] = problems
    print("VQTOKEN-VERIFY " + json.dumps(result))
    """
)


def verify_converted_folder(folder: str | os.PathLike, dtype: torch.dtype | str | None = None,
                            source_folder: str | os.PathLike | None = None, sources: dict | None = None,
                            block_modules=("vqtoken",), timeout: float = 1800) -> dict:
    """
    Reloads `folder` through the Auto classes with `trust_remote_code=True` in a fresh Python process in which
    `block_modules` cannot be imported, and, when `sources` (`{our_key: [source_file, source_key]}`) is given, compares
    every tensor with the source. Raises [`ConversionError`] on any difference; returns what the process reported.
    """
    folder = Path(folder).resolve()
    if dtype is None:
        dtype = json.loads((folder / "config.json").read_text()).get("dtype") or "float32"
    dtype_name = str(dtype).replace("torch.", "")
    with tempfile.TemporaryDirectory(prefix="vqtoken-verify-") as scratch:
        spec = {"folder": str(folder), "dtype": dtype_name, "block_modules": list(block_modules),
                "source_folder": str(Path(source_folder).resolve()) if source_folder else None, "sources": sources}
        spec_file = Path(scratch) / "spec.json"
        spec_file.write_text(json.dumps(spec))
        environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(Path(scratch) / "modules")}
        process = subprocess.run([sys.executable, "-c", VERIFY_SCRIPT, str(spec_file)], cwd=scratch,
                                 env=environment, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in process.stdout.splitlines() if line.startswith("VQTOKEN-VERIFY ")]
    if process.returncode != 0 or not lines:
        raise ConversionError(f"Reloading {folder} with trust_remote_code=True in a clean process failed:\n"
                              f"{process.stderr[-4000:]}")
    result = json.loads(lines[-1][len("VQTOKEN-VERIFY "):])
    if result["problems"]:
        raise ConversionError(f"Verification of {folder} failed:\n  - " + "\n  - ".join(result["problems"][:50]))
    if "transformers_modules" not in result["model_class"]:
        raise ConversionError(f"The reload did not use the folder's remote code ({result['model_class']}).")
    result["status"] = "passed"
    return result


def file_manifest(folder: Path, exclude=(REPORT_FILE,)) -> dict:
    """`{relative path: {"size", "sha256"}}` of every file under `folder`."""
    manifest = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        if name in exclude:
            continue
        with open(path, "rb") as handle:
            digest = hash_stream(hashlib.sha256(), handle)
        manifest[name] = {"size": path.stat().st_size, "sha256": digest.hexdigest()}
    return manifest


# ------------------------------------------------------------------------------------------------------- conversion


def convert_checkpoint(
    checkpoint: str,
    output: str | os.PathLike,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    dtype: str = "keep",
    processor: str = DEFAULT_PROCESSOR,
    processor_revision: str | None = None,
    vision_config: str | None = None,
    mode: str = "attention",
    selection: str = "fixed",
    min_clusters: int = 12,
    max_clusters: int = 32,
    vq_attention_heads: int = RELEASED_VQ_ATTENTION_HEADS,
    max_shard_size: str | int = DEFAULT_MAX_SHARD_SIZE,
    repo_id: str | None = None,
    license: str | None = None,
    overwrite: bool = False,
    verify: bool = True,
    verify_block_modules=("vqtoken",),
) -> ConversionReport:
    """
    Converts a released VQToken checkpoint into a Transformers folder at `output` (see the module docstring).

    Nothing is left at `output` when any step fails: everything is written into a temporary sibling folder that is
    renamed at the end. Raises [`ConversionError`] with the reason.
    """
    from .model_card import model_card
    from .modeling.modeling_vqtoken_llava_onevision import VQTokenLlavaOnevisionForConditionalGeneration

    output = Path(output).expanduser().resolve()
    if output.exists() and not overwrite:
        raise ConversionError(f"{output} already exists (pass overwrite=True / --overwrite to replace it).")
    source_folder = resolve_folder(checkpoint, revision, token,
                                   ["*.json", "*.safetensors", "*.md", "pytorch_model*.bin"])
    source_config = read_json(source_folder / "config.json", "config.json")
    tower = source_config.get("mm_vision_tower")
    if not tower:
        raise ConversionError(f"{source_folder / 'config.json'} names no mm_vision_tower: not a LLaVA checkpoint?")
    vision_fields, kept, vision_description = load_vision_config(vision_config, tower, token=token)
    tensors, origin = read_checkpoint(source_folder)
    target_dtype = resolve_dtype(dtype, tensors)

    processor_folder = resolve_folder(processor, processor_revision, token,
                                      ["*.json", "*.jinja", "*.txt", "*.model", "tokenizer*"])
    source_processor = load_source_processor(processor_folder, processor)

    vq_settings = {
        "vqtoken_mode": mode,
        "vqtoken_selection_method": selection,
        "vqtoken_min_clusters": min_clusters,
        "vqtoken_max_clusters": max_clusters,
        "vqtoken_attention_heads": vq_attention_heads,
    }
    config = build_config(source_config, tensors, source_processor, vision_fields, kept, dict(vq_settings), target_dtype)
    vq_processor = build_processor(source_processor, config, source_config.get("image_aspect_ratio"))
    if vq_processor.tokenizer.convert_tokens_to_ids(vq_processor.video_token) != config.video_token_id:
        raise ConversionError("The processor's video token differs from the tokenizer's.")

    with torch.device("meta"):
        model = VQTokenLlavaOnevisionForConditionalGeneration(config)
    shapes = {key: value.shape for key, value in model.state_dict().items()}
    state, sources, dropped = map_state_dict(tensors, shapes, config.tie_word_embeddings, target_dtype)
    model.load_state_dict(state, strict=True, assign=True)
    if config.tie_word_embeddings:
        model.tie_weights()
    model.generation_config = build_generation_config([source_folder, processor_folder], config, vq_processor.tokenizer)
    parameters = sum(p.numel() for p in model.parameters())

    report = ConversionReport(
        source=checkpoint,
        source_revision=revision,
        source_files=sorted(set(origin.values())),
        processor=processor,
        vision_tower=vision_description,
        dtype=str(target_dtype).replace("torch.", ""),
        # a tied lm_head.weight present in the source is checked equal to embed_tokens and written once
        tensors_mapped=len(set(sources.values()) | ({SOURCE_LM_HEAD_KEY} & set(tensors))),
        source_tensors=len(tensors),
        dropped_tensors=dropped,
        parameters=parameters,
        tied_embeddings=bool(config.tie_word_embeddings),
        vqtoken={k: getattr(config, k) for k in vq_settings},
    )
    license = license or _source_license(source_folder) or "other"

    partial = output.parent / f".{output.name}.partial-{uuid.uuid4().hex[:8]}"
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        model.save_pretrained(str(partial), max_shard_size=max_shard_size)
        vq_processor.save_pretrained(str(partial))
        del model, state
        (partial / "README.md").write_text(model_card(
            repo_id=repo_id or f"your-org/{output.name}",
            source=checkpoint,
            source_revision=revision,
            processor=processor,
            vision_tower=tower,
            dtype=report.dtype,
            parameters=parameters,
            config=config,
            license=license,
        ))
        if verify:
            report.verification = verify_converted_folder(
                partial, target_dtype, source_folder,
                {key: [origin[source_key], source_key] for key, source_key in sources.items()},
                block_modules=verify_block_modules,
            )
        else:
            report.verification = {"status": "skipped"}
        report.files = file_manifest(partial)
        (partial / REPORT_FILE).write_text(report.to_json() + "\n")
        if output.exists():
            previous = output.parent / f".{output.name}.previous-{uuid.uuid4().hex[:8]}"
            output.rename(previous)
            partial.rename(output)
            shutil.rmtree(previous)
        else:
            partial.rename(output)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    logger.info("Converted %s into %s", checkpoint, output)
    return report


def _source_license(folder: Path) -> str | None:
    """The `license:` of the source README's YAML front matter, when there is one."""
    readme = folder / "README.md"
    if not readme.is_file():
        return None
    match = re.match(r"---\s*\n(.*?)\n---", readme.read_text(errors="replace"), re.DOTALL)
    if not match:
        return None
    import yaml

    try:
        metadata = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError:
        return None
    return metadata.get("license") if isinstance(metadata, dict) else None


# ----------------------------------------------------------------------------------------------------- command line


def add_convert_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds the options of `vqtoken convert` / `conversion/convert_vqtoken_to_hf.py` to `parser`."""
    from .modeling.configuration_vqtoken_llava_onevision import VQTOKEN_MODES, VQTOKEN_SELECTION_METHODS

    parser.add_argument("--checkpoint", required=True, help="released checkpoint: a local folder or a Hub id")
    parser.add_argument("--revision", default=None, help="Hub revision of --checkpoint")
    parser.add_argument("--token", default=None, help="Hub token (default: the token of `hf auth login`)")
    parser.add_argument("--output", required=True, help="folder to create")
    parser.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    parser.add_argument("--dtype", default="keep", choices=["keep", *DTYPES], help="dtype of the written weights")
    parser.add_argument("--processor", default=DEFAULT_PROCESSOR,
                        help="llava-hf OneVision processor folder or Hub id (tokenizer, chat template, image and video "
                             "processors are reused)")
    parser.add_argument("--vision-config", default=None,
                        help="SigLIP (vision) config file, folder or Hub id, for towers whose sizes are not known")
    parser.add_argument("--mode", default="attention", choices=VQTOKEN_MODES, help="vqtoken_mode")
    parser.add_argument("--selection", default="fixed", choices=VQTOKEN_SELECTION_METHODS,
                        help="vqtoken_selection_method")
    parser.add_argument("--min-clusters", type=int, default=12, help="vqtoken_min_clusters")
    parser.add_argument("--max-clusters", type=int, default=32, help="vqtoken_max_clusters")
    parser.add_argument("--vq-attention-heads", type=int, default=RELEASED_VQ_ATTENTION_HEADS,
                        help="heads of the VQ-Attention layer (not visible in the tensors; the release uses 8)")
    parser.add_argument("--max-shard-size", default=DEFAULT_MAX_SHARD_SIZE,
                        help="shard the safetensors above this size (e.g. 2GB)")
    parser.add_argument("--repo-id", default=None, help="Hub id the model card's examples use")
    parser.add_argument("--license", default=None,
                        help="licence for the model card (default: the source README's, else 'other')")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip the clean-process reload and tensor comparison (not recommended)")
    return parser


def run_convert(args: argparse.Namespace) -> int:
    """Runs a conversion from parsed arguments, prints the report; returns the exit status."""
    try:
        report = convert_checkpoint(
            args.checkpoint, args.output, revision=args.revision, token=args.token, dtype=args.dtype,
            processor=args.processor, vision_config=args.vision_config, mode=args.mode, selection=args.selection,
            min_clusters=args.min_clusters, max_clusters=args.max_clusters,
            vq_attention_heads=args.vq_attention_heads, max_shard_size=args.max_shard_size, repo_id=args.repo_id,
            license=args.license, overwrite=args.overwrite, verify=not args.no_verify,
        )
    except ConversionError as error:
        print(f"conversion failed: {error}", file=sys.stderr)
        return 1
    print(report.summary())
    print(f"written to {Path(args.output).resolve()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Convert the released VQToken checkpoint to a Transformers folder.")
    add_convert_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_convert(args)


__all__ = [
    "ConversionError",
    "ConversionReport",
    "KNOWN_VISION_TOWERS",
    "add_convert_arguments",
    "convert_checkpoint",
    "map_released_key",
    "read_checkpoint",
    "run_convert",
    "verify_converted_folder",
]
