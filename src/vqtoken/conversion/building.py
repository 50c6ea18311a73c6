# Copyright 2026 The VQToken for Transformers authors. Licensed under the Apache License, Version 2.0.
"""Building the converted model's configuration, processor and generation config from the released config.json, the
tensors, the known SigLIP tower (or `--vision-config`) and a llava-hf OneVision processor."""

import logging
from pathlib import Path

import torch

from .checkpoint import read_json, resolve_folder
from .key_map import SOURCE_EMBED_KEY, SOURCE_VISION_PREFIX, count_vision_layers
from .report import ConversionError


logger = logging.getLogger(__name__)

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}

# VQ-Attention of the release: `nn.TransformerDecoderLayer(d_model=hidden, nhead=8)` (the head count is not visible
# in the tensors; it is fixed in the released code).
RELEASED_VQ_ATTENTION_HEADS = 8

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

# The family of the release: LLaVA-NeXT's LLaVA-Qwen. Its `LlavaQwenConfig` writes model_type "llava_qwen"; the
# lmms-lab OneVision base checkpoints say "llava"; older exports kept Qwen2's "qwen2".
SOURCE_ARCHITECTURE = "LlavaQwenForCausalLM"
SOURCE_MODEL_TYPES = ("llava_qwen", "llava", "qwen2")
SOURCE_LAYOUT_KEYS = ("model.mm_projector.0.weight", "model.embed_tokens.weight")

# Fields of the LLaVA-Qwen config.json that describe the language model.
TEXT_REQUIRED = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
)
TEXT_OPTIONAL = (
    "hidden_act",
    "max_position_embeddings",
    "initializer_range",
    "rms_norm_eps",
    "use_cache",
    "rope_theta",
    "rope_scaling",
    "use_sliding_window",
    "sliding_window",
    "max_window_layers",
    "attention_dropout",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
)
VISION_FIELDS = ("hidden_size", "intermediate_size", "num_attention_heads", "patch_size", "image_size")


def load_vision_config(
    vision_config: str | None, tower: str, revision: str | None = None, token: str | bool | None = None
) -> tuple[dict, int | None, str]:
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
        raise ConversionError(
            f"--vision-config {vision_config!r} is not a SigLIP config (model_type {data.get('model_type')!r})."
        )
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


def build_config(
    source_config: dict,
    tensors: dict[str, torch.Tensor],
    processor,
    vision_fields: dict,
    expected_kept_layers: int | None,
    vqtoken_settings: dict,
    dtype: torch.dtype,
):
    """
    The [`VQTokenLlavaOnevisionConfig`] of the converted model.

    Text sizes, token ids, rope and grid pinpoints come from the source config; vision sizes from the known tower or
    `--vision-config`, the number of vision layers from the tensors; the placeholder ids from the processor's
    tokenizer (the released config marks images with -200 inside `input_ids`, which a tokenizer cannot produce).
    """
    from ..modeling.configuration_vqtoken_llava_onevision import VQTokenLlavaOnevisionConfig

    check_source_family(source_config, tensors)
    check_source_architecture(source_config)
    vision_config = build_vision_config(source_config, tensors, vision_fields, expected_kept_layers)
    text_config = build_text_config(source_config, tensors)
    token_ids = placeholder_token_ids(processor, text_config["vocab_size"])
    settings = dict(vqtoken_settings)
    heads = settings.pop("vqtoken_attention_heads", RELEASED_VQ_ATTENTION_HEADS)
    linear1 = tensors.get("model.cross_attention.transformer_decoder.layers.0.linear1.weight")
    if linear1 is None:
        raise ConversionError(
            "The checkpoint has no VQ-Attention feed-forward "
            "(model.cross_attention.transformer_decoder.layers.0.linear1.weight)."
        )
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
            image_grid_pinpoints=source_config["image_grid_pinpoints"],
            tie_word_embeddings=text_config["tie_word_embeddings"],
            vqtoken_attention_heads=heads,
            vqtoken_attention_intermediate_size=int(linear1.shape[0]),
            **settings,
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


def check_source_architecture(source_config: dict):
    """Refuses a LLaVA-Qwen variant other than OneVision's (projector, patch merging, feature selection, pinpoints)."""
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
        raise ConversionError(
            "Only mm_vision_select_feature 'patch' is supported, got "
            f"{source_config.get('mm_vision_select_feature')!r}."
        )
    pinpoints = source_config.get("image_grid_pinpoints")
    if not isinstance(pinpoints, list) or not pinpoints:
        raise ConversionError("The source config.json has no image_grid_pinpoints list.")


def build_vision_config(
    source_config: dict, tensors: dict[str, torch.Tensor], vision_fields: dict, expected_kept_layers: int | None
) -> dict:
    """The SigLIP configuration: sizes from `vision_fields`, as many layers as the checkpoint keeps, no head."""
    kept_layers = count_vision_layers(tensors)
    if expected_kept_layers is not None and kept_layers != expected_kept_layers:
        raise ConversionError(
            f"The known tower keeps {expected_kept_layers} encoder layers, the checkpoint holds {kept_layers}."
        )
    full_layers = vision_fields.get("num_hidden_layers")
    if full_layers is not None and kept_layers > full_layers:
        raise ConversionError(
            f"The checkpoint holds {kept_layers} vision layers, more than the {full_layers} of --vision-config."
        )
    mm_hidden = source_config.get("mm_hidden_size")
    if mm_hidden is not None and mm_hidden != vision_fields["hidden_size"]:
        raise ConversionError(
            f"mm_hidden_size ({mm_hidden}) differs from the vision hidden size ({vision_fields['hidden_size']})."
        )
    return {
        **{k: v for k, v in vision_fields.items() if k != "num_hidden_layers"},
        "model_type": "siglip_vision_model",
        "num_hidden_layers": kept_layers,
        "vision_use_head": False,
    }


def build_text_config(source_config: dict, tensors: dict[str, torch.Tensor]) -> dict:
    """The Qwen2 configuration, from the Qwen2 fields of the source config.json, checked against the embeddings."""
    text_config = {"model_type": "qwen2"}
    for name in TEXT_REQUIRED + TEXT_OPTIONAL:
        if source_config.get(name) is not None:
            text_config[name] = source_config[name]
    defaulted = [name for name in TEXT_OPTIONAL if source_config.get(name) is None]
    if defaulted:
        logger.info("Source config.json does not set %s: Qwen2 defaults apply.", defaulted)
    text_config["tie_word_embeddings"] = bool(source_config.get("tie_word_embeddings", True))
    if SOURCE_EMBED_KEY not in tensors:
        raise ConversionError(f"The checkpoint has no {SOURCE_EMBED_KEY!r}.")
    rows = tensors[SOURCE_EMBED_KEY].shape[0]
    if rows != text_config["vocab_size"]:
        raise ConversionError(
            f"config.json says vocab_size {text_config['vocab_size']} but {SOURCE_EMBED_KEY} has {rows} rows."
        )
    return text_config


def placeholder_token_ids(processor, vocab_size: int) -> dict[str, int]:
    """The ids of the processor's `<image>` and `<video>` tokens, which must fit the embedding matrix as it is."""
    tokenizer = processor.tokenizer
    token_ids = {}
    for kind, token in (("image", processor.image_token), ("video", processor.video_token)):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == tokenizer.unk_token_id:
            raise ConversionError(f"The processor's tokenizer has no {token!r} token.")
        if not 0 <= token_id < vocab_size:
            raise ConversionError(
                f"The processor's {token!r} id {token_id} does not fit the embedding matrix ({vocab_size} rows). The "
                "converter does not resize embeddings: use a processor whose tokenizer matches the checkpoint."
            )
        token_ids[kind] = token_id
    if len(tokenizer) > vocab_size:
        raise ConversionError(
            f"The processor's tokenizer has {len(tokenizer)} tokens, more than the {vocab_size} rows "
            "of the embedding matrix (no silent resize)."
        )
    return token_ids


def target_dtype(name: str, tensors: dict[str, torch.Tensor]) -> torch.dtype:
    """The dtype of the written weights: `name`, or for `"keep"` the one floating dtype of the source tensors."""
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
    from ..modeling.processing_vqtoken_llava_onevision import VQTokenLlavaOnevisionProcessor

    image_size = config.vision_config.image_size
    for part in ("image_processor", "video_processor"):
        size = getattr(getattr(source, part), "size", None)
        size = dict(size) if size is not None else {}
        sides = {size.get("height"), size.get("width")} - {None}
        if sides and sides != {image_size}:
            raise ConversionError(
                f"The processor's {part} resizes to {size}, the vision tower expects {image_size}x{image_size}."
            )
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
