"""LoRA on the language model of a VQToken model, through peft: inject, save, load and merge adapters."""

from __future__ import annotations

import logging


logger = logging.getLogger(__name__)


def lora_config(args):
    """The peft `LoraConfig` of `args` (a [`~vqtoken.training.config.LoraArgs`]): adapters on the language model's
    linear layers only, never on the vision tower, projector or VQ-Attention."""
    from peft import LoraConfig

    targets = "|".join(args.target_modules)
    return LoraConfig(
        r=args.r,
        lora_alpha=args.alpha,
        lora_dropout=args.dropout,
        target_modules=rf".*language_model.*\.({targets})",
    )


def apply_lora(model, args):
    """Injects LoRA adapters into `model` (in place; every base weight is frozen) and returns the `PeftModel`."""
    from peft import get_peft_model

    peft_model = get_peft_model(model, lora_config(args))
    logger.info("LoRA on the language model: r=%d, alpha=%d, targets %s", args.r, args.alpha, args.target_modules)
    return peft_model


def load_lora_adapter(model, adapter_dir: str):
    """Puts the adapters saved in `adapter_dir` (by `PeftModel.save_pretrained`) on `model`; returns a `PeftModel`."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, adapter_dir)


def merge_lora(peft_model):
    """Folds the adapters into the base weights and returns the plain model."""
    return peft_model.merge_and_unload()


__all__ = ["apply_lora", "load_lora_adapter", "lora_config", "merge_lora"]
