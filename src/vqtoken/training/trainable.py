"""
The model side of training (`vqtoken.modeling` is the model itself): loading the starting model, choosing the parts
that train, and the module whose forward computes the loss of a batch (so that `accelerate` wraps one module: DDP,
DeepSpeed and FSDP see every parameter used).
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from torch.nn import functional as F

from ..modeling.configuration_vqtoken_llava_onevision import VQTokenLlavaOnevisionConfig
from ..modeling.modeling_vqtoken_llava_onevision import VQTokenLlavaOnevisionForConditionalGeneration
from ..modeling.vqtoken_inference import encode_for_generation
from .config import PARTS, ModelArgs, TrainingConfigError
from .data import IGNORE_INDEX


logger = logging.getLogger(__name__)

TINY_DEFAULTS = {
    "image_size": 32,
    "patch_size": 8,
    "hidden_size": 32,
    "text_layers": 2,
    "vision_hidden_size": 24,
    "vision_layers": 2,
    "seed": 0,
}


def tiny_model_config(tokenizer, tiny: dict | None = None, vqtoken: dict | None = None) -> VQTokenLlavaOnevisionConfig:
    """A [`~vqtoken.tiny.tiny_config`] with the tower and language-model depth and widths of `tiny` (see
    `TINY_DEFAULTS`)."""
    from ..tiny import tiny_config

    sizes = {**TINY_DEFAULTS, **(tiny or {})}
    unknown = set(sizes) - set(TINY_DEFAULTS)
    if unknown:
        raise TrainingConfigError(f"Unknown keys {sorted(unknown)} in model.tiny; known: {sorted(TINY_DEFAULTS)}.")
    config = tiny_config(
        tokenizer,
        image_size=sizes["image_size"],
        patch_size=sizes["patch_size"],
        hidden_size=sizes["hidden_size"],
        **(vqtoken or {}),
    )
    vision = config.vision_config
    vision.hidden_size = sizes["vision_hidden_size"]
    vision.intermediate_size = 2 * sizes["vision_hidden_size"]
    vision.num_hidden_layers = sizes["vision_layers"]
    text = config.text_config
    text.num_hidden_layers = sizes["text_layers"]
    if getattr(text, "layer_types", None) is not None:
        text.layer_types = ["full_attention"] * sizes["text_layers"]
    return config


def load_starting_model(args: ModelArgs):
    """
    The starting model and its processor.

    - `"tiny"`: a small random model built offline (`args.tiny` sizes, tiny tokenizer).
    - a VQToken folder / Hub id, or a stock LLaVA-OneVision checkpoint (the VQ-Attention then starts from its
      initialisation): loaded by [`vqtoken.loading.load_model_and_processor`] on the CPU in float32 (accelerate
      places it), with the `args.vqtoken` fields overriding its configuration.
    """
    vqtoken = dict(args.vqtoken or {})
    if args.name_or_path == "tiny":
        from ..tiny import tiny_processor, tiny_tokenizer

        tokenizer = tiny_tokenizer()
        config = tiny_model_config(tokenizer, args.tiny, vqtoken)
        torch.manual_seed(int({**TINY_DEFAULTS, **(args.tiny or {})}["seed"]))
        model = VQTokenLlavaOnevisionForConditionalGeneration(config)
        return model, tiny_processor(config, tokenizer)

    from ..loading import load_model_and_processor as load_pretrained

    return load_pretrained(args.name_or_path, device="cpu", dtype="float32", **vqtoken)


# Children of the vision tower that the model never reads: it takes a hidden state (`vision_feature_layer`), which
# comes before the tower's final norm and pooling head.
UNUSED_VISION_TOWER_CHILDREN = ("post_layernorm", "head")


def part_modules(model: VQTokenLlavaOnevisionForConditionalGeneration) -> dict[str, list[nn.Module | nn.Parameter]]:
    """
    The modules (and loose parameters) of each trainable part: the ones its forward uses, so that every trained
    parameter gets a gradient (the optimizer state of a parameter that never got one is missing from a checkpoint,
    which FSDP's sharded checkpoints then cannot load).
    """
    inner = model.model
    vision_tower = [
        module for name, module in inner.vision_tower.named_children() if name not in UNUSED_VISION_TOWER_CHILDREN
    ]
    return {
        "vq_attention": [inner.vq_attention],
        "projector": [inner.multi_modal_projector, inner.image_newline],
        "vision_tower": vision_tower,
        "language_model": [inner.language_model, model.lm_head],
    }


def _parameters(items) -> list[tuple[str, nn.Parameter]]:
    found = []
    for item in items:
        if isinstance(item, nn.Parameter):
            found.append(("", item))
        else:
            found.extend(item.named_parameters())
    return found


def select_trainable_parameters(
    model, parts: dict[str, float], lora: bool = False, video_tokens: str = "model"
) -> list[dict]:
    """
    Freezes the whole model, then unfreezes the chosen parts and returns one optimizer parameter group per part
    (`{"params", "lr", "name"}`). With `lora`, the language-model group holds only the LoRA adapter weights. The
    VQ-Attention trains only where it runs (`vqtoken_mode: attention` with `video_tokens: model`); otherwise it stays
    frozen, with a warning.
    """
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise TrainingConfigError(f"Unknown parts {sorted(unknown)}; choose among {PARTS}.")
    parts = dict(parts)
    if "vq_attention" in parts and (model.config.vqtoken_mode != "attention" or video_tokens != "model"):
        logger.warning(
            "`vq_attention` is in train.parts but does not run (vqtoken_mode %r, video_tokens %r): it stays frozen.",
            model.config.vqtoken_mode,
            video_tokens,
        )
        parts.pop("vq_attention")
    if not parts:
        raise TrainingConfigError("No part of train.parts runs in this configuration: nothing would train.")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    groups, seen = [], set()
    modules = part_modules(model)
    for name in PARTS:
        if name not in parts:
            continue
        params = []
        for parameter_name, parameter in _parameters(modules[name]):
            if lora and name == "language_model" and "lora_" not in parameter_name:
                continue
            if id(parameter) in seen:  # tied embeddings
                continue
            seen.add(id(parameter))
            parameter.requires_grad_(True)
            params.append(parameter)
        if not params:
            raise TrainingConfigError(f"Part {name!r} has no parameters to train.")
        groups.append({"params": params, "lr": float(parts[name]), "name": name})
        logger.info(
            "Training %s: %d tensors, %d parameters, lr %g",
            name,
            len(params),
            sum(p.numel() for p in params),
            parts[name],
        )
    return groups


class VQTokenTrainingModule(nn.Module):
    """
    Wraps a VQToken model; `forward(**batch)` encodes the videos, rewrites each sample's placeholder run to the
    number of tokens its video produced (adaptive K), runs the language model and returns the summed token loss, the
    number of answer tokens and the visual tokens per sample.

    video_tokens: `"model"` (the configured `vqtoken_mode`) or `"full"` (all projected tokens, no compression).
    """

    def __init__(
        self, model: VQTokenLlavaOnevisionForConditionalGeneration, pad_token_id: int, video_tokens: str = "model"
    ):
        super().__init__()
        self.model = model
        self.pad_token_id = int(pad_token_id)
        self.video_tokens = video_tokens

    def forward(self, input_ids, attention_mask, labels, pixel_values_videos, **_):
        encoded = encode_for_generation(
            self.model, pixel_values_videos.to(self.model.dtype), video_tokens=self.video_tokens
        )
        input_ids, attention_mask, labels = self.model.align_video_placeholders(
            input_ids,
            attention_mask,
            encoded.visual_tokens,
            labels=labels,
            pad_token_id=self.pad_token_id,
            padding_side="right",
        )
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            mm_encoder_outputs={"video": encoded.video_outputs},
            use_cache=False,
        )
        visual = torch.tensor(encoded.visual_tokens, device=input_ids.device)
        logits = outputs.logits[:, :-1].float()
        targets = labels[:, 1:]
        loss_sum = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
        )
        return loss_sum, (targets != IGNORE_INDEX).sum(), visual


__all__ = [
    "TINY_DEFAULTS",
    "UNUSED_VISION_TOWER_CHILDREN",
    "VQTokenTrainingModule",
    "load_starting_model",
    "part_modules",
    "select_trainable_parameters",
    "tiny_model_config",
]
