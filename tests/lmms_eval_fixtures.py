"""
The built-in default model saved twice for the lmms-eval tests: as a VQToken folder and as stock LLaVA-OneVision with
the same weights (the reference `llava_hf` loads). The tasks and clips come from `vqtoken_lmms_eval.synthetic_task`.

Not library code.
"""

from pathlib import Path

from vqtoken_lmms_eval.synthetic_task import CLIP_FRAMES, NUM_FRAMES, write_task  # noqa: F401 (for the tests)


def save_model_folders(root: Path) -> tuple[Path, Path]:
    """
    Saves the built-in default model twice: `root/vqtoken` (VQToken folder) and `root/stock`
    (`LlavaOnevisionForConditionalGeneration` + `LlavaOnevisionProcessor` holding the same weights, the VQ-Attention
    left out). Both tokenizers end a turn with `<|im_end|>` as LLaVA-OneVision's Qwen2 tokenizer does (the default
    model's says `<|endoftext|>`): lmms-eval's `llava_hf` stops on the tokenizer's end token, VQToken on the model's
    `generation_config` (`<|im_end|>`). Returns both folders.
    """
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration, LlavaOnevisionProcessor

    from vqtoken.loading import load_model_and_processor

    model, processor = load_model_and_processor(None, device="cpu", dtype="float32")
    processor.tokenizer.eos_token = "<|im_end|>"
    vqtoken_dir, stock_dir = root / "vqtoken", root / "stock"
    model.save_pretrained(vqtoken_dir)
    processor.save_pretrained(vqtoken_dir)

    settings = {key: value for key, value in model.config.to_dict().items() if not key.startswith("vqtoken_")}
    for key in ("model_type", "architectures", "auto_map", "transformers_version", "custom_pipelines"):
        settings.pop(key, None)
    stock = LlavaOnevisionForConditionalGeneration(LlavaOnevisionConfig(**settings)).eval()
    result = stock.load_state_dict(model.state_dict(), strict=False)
    if result.missing_keys or any(not key.startswith("model.vq_attention.") for key in result.unexpected_keys):
        raise AssertionError(f"stock twin: missing {result.missing_keys}, unexpected {result.unexpected_keys}")
    stock.generation_config = model.generation_config
    stock.save_pretrained(stock_dir)
    LlavaOnevisionProcessor(
        image_processor=processor.image_processor,
        tokenizer=processor.tokenizer,
        video_processor=processor.video_processor,
        num_image_tokens=processor.num_image_tokens,
        vision_feature_select_strategy=processor.vision_feature_select_strategy,
        chat_template=processor.chat_template,
    ).save_pretrained(stock_dir)
    return vqtoken_dir, stock_dir
