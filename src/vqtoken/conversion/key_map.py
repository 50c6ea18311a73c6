# Copyright 2026 The VQToken for Transformers authors. Licensed under the Apache License, Version 2.0.
"""The released tensor names (LLaVA-NeXT layout) and ours: renaming, the tensors dropped by design, and the checks that
every source tensor has a place and every model tensor a source."""

import logging
import re

import torch

from .report import ConversionError


logger = logging.getLogger(__name__)

RELEASED_CROSS_ATTENTION_TENSORS = 20

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

# Released tensors the model cannot use by design: dropped, and listed in the conversion report. LLaVA-NeXT replaces
# the SigLIP head by an identity, but a source saved from a stock SigLIP may still carry it.
DROPPED_SOURCE_PREFIXES = ("model.vision_tower.vision_tower.vision_model.head.",)

EMBED_KEY = "model.language_model.embed_tokens.weight"
LM_HEAD_KEY = "lm_head.weight"
SOURCE_EMBED_KEY = "model.embed_tokens.weight"
SOURCE_LM_HEAD_KEY = "lm_head.weight"
SOURCE_VISION_PREFIX = "model.vision_tower.vision_tower.vision_model."


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
            return target.replace("{vision}", vision_prefix) + key[len(source) :]
    return None


def count_vision_layers(tensors: dict[str, torch.Tensor]) -> int:
    """Number of SigLIP encoder layers present in the released tensors (they must be numbered 0..n-1)."""
    pattern = re.compile(re.escape(SOURCE_VISION_PREFIX) + r"encoder\.layers\.(\d+)\.")
    layers = {int(m.group(1)) for key in tensors if (m := pattern.match(key))}
    if not layers:
        raise ConversionError(
            f"The checkpoint holds no vision encoder layers ({SOURCE_VISION_PREFIX}encoder.layers.*)."
        )
    if layers != set(range(len(layers))):
        raise ConversionError(f"Vision encoder layers are not numbered 0..n-1: found {sorted(layers)}.")
    return len(layers)


def map_state_dict(
    tensors: dict[str, torch.Tensor], model_shapes: dict[str, torch.Size], tied: bool, dtype: torch.dtype
) -> tuple[dict[str, torch.Tensor], dict[str, str], list[str]]:
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
        logger.warning(
            "The checkpoint holds %d model.cross_attention.* tensors; the release has %d.",
            len(cross),
            RELEASED_CROSS_ATTENTION_TENSORS,
        )
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
            problems.append(
                "config.json ties the embeddings but lm_head.weight differs from model.embed_tokens.weight"
            )
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
        for key in state
        if key in model_shapes and state[key].shape != model_shapes[key]
    )
    if wrong:
        problems.append(f"{len(wrong)} shape(s) do not agree with the configuration: {wrong}")
    not_float = sorted(key for key, tensor in tensors.items() if not tensor.is_floating_point() and key not in dropped)
    if not_float:
        problems.append(f"non-floating-point tensors: {not_float}")
    if problems:
        raise ConversionError(
            "The checkpoint does not fit the released VQToken layout:\n  - " + "\n  - ".join(problems)
        )
    if dropped:
        logger.info("Dropped %d source tensors the model does not use: %s", len(dropped), dropped)
    return {key: tensor.to(dtype) for key, tensor in state.items()}, sources, dropped
