# Copyright 2026 The VQToken for Transformers authors. Licensed under the Apache License, Version 2.0.
"""
Serving benchmark in vLLM: stock LLaVA-OneVision against VQToken, the same weights, 32-frame videos, one run.

Placeholder.
"""

import json
from pathlib import Path


def save_stock_onevision_folder(vqtoken_folder, output) -> str:
    """
    Writes the stock LLaVA-OneVision counterpart of a VQToken folder, as vLLM's own `LlavaOnevisionForConditionalGeneration`
    loads it: the same weights without `vq_attention`, the vision tower under `vision_tower.vision_model.` (the
    layout of the llava-hf checkpoints), the configuration without the VQToken fields, and a stock processor.
    """
    from safetensors.torch import load_file, save_file
    from transformers import AutoProcessor, LlavaOnevisionConfig, LlavaOnevisionProcessor

    vqtoken_folder, output = Path(vqtoken_folder), Path(output)
    output.mkdir(parents=True, exist_ok=True)
    config = json.loads((vqtoken_folder / "config.json").read_text())
    stock = {
        key: value
        for key, value in config.items()
        if not key.startswith("vqtoken_") and key not in ("auto_map", "custom_pipelines", "architectures", "model_type")
    }
    stock_config = LlavaOnevisionConfig(**stock)
    stock_config.architectures = ["LlavaOnevisionForConditionalGeneration"]
    stock_config.save_pretrained(output)
    weights = {}
    for path in sorted(vqtoken_folder.glob("*.safetensors")):
        for key, tensor in load_file(path).items():
            if key.startswith("model.vq_attention."):
                continue
            if key.startswith("model.vision_tower."):
                key = "model.vision_tower.vision_model." + key.removeprefix("model.vision_tower.")
            weights[key] = tensor
    save_file(weights, output / "model.safetensors", metadata={"format": "pt"})
    processor = AutoProcessor.from_pretrained(vqtoken_folder)
    LlavaOnevisionProcessor(
        image_processor=processor.image_processor,
        tokenizer=processor.tokenizer,
        video_processor=processor.video_processor,
        num_image_tokens=processor.num_image_tokens,
        vision_feature_select_strategy=processor.vision_feature_select_strategy,
        chat_template=processor.chat_template,
        vision_aspect_ratio=processor.vision_aspect_ratio,
    ).save_pretrained(output)
    for name in ("generation_config.json",):
        if (vqtoken_folder / name).exists():
            (output / name).write_text((vqtoken_folder / name).read_text())
    return str(output)
