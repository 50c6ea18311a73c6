"""
The built-in default model saved twice for the lmms-eval tests: as a VQToken folder and as stock LLaVA-OneVision with
the same weights (the reference `llava_hf` loads). The tasks and clips come from `vqtoken.evaluation.synthetic_task`.

Not library code.
"""

from pathlib import Path

from vqtoken.evaluation.synthetic_task import CLIP_FRAMES, NUM_FRAMES, write_task  # noqa: F401 (for the tests)


def save_model_folders(root: Path) -> tuple[Path, Path]:
    """
    Saves the built-in default model twice: `root/vqtoken` (VQToken folder) and `root/stock`
    (`LlavaOnevisionForConditionalGeneration` + `LlavaOnevisionProcessor` holding the same weights, the VQ-Attention
    left out). Both tokenizers end a turn with `<|im_end|>` as LLaVA-OneVision's Qwen2 tokenizer does (the default
    model's says `<|endoftext|>`): lmms-eval's `llava_hf` stops on the tokenizer's end token, VQToken on the model's
    `generation_config` (`<|im_end|>`). Returns both folders.
    """
    from helpers import stock_processor, stock_twin

    from vqtoken.loading import load_model_and_processor

    model, processor = load_model_and_processor(None, device="cpu", dtype="float32")
    processor.tokenizer.eos_token = "<|im_end|>"
    vqtoken_dir, stock_dir = root / "vqtoken", root / "stock"
    model.save_pretrained(vqtoken_dir)
    processor.save_pretrained(vqtoken_dir)
    stock = stock_twin(model)
    stock.generation_config = model.generation_config
    stock.save_pretrained(stock_dir)
    stock_processor(processor).save_pretrained(stock_dir)
    return vqtoken_dir, stock_dir
