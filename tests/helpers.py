"""Small shared helpers of the test suite."""

import numpy as np
from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration, LlavaOnevisionProcessor


# the start of a script run in a clean process that must not see this package (nor triton): remote code only
BLOCK_VQTOKEN = """
import sys
from vqtoken.conversion.verify import block_imports
block_imports(["vqtoken", "triton"])
"""


def random_clip(seed: int, num_frames: int = 4, size: int = 32) -> np.ndarray:
    """A random uint8 clip `(num_frames, size, size, 3)`."""
    return np.random.default_rng(seed).integers(0, 256, (num_frames, size, size, 3), dtype=np.uint8)


def video_prompt(processor, question: str = "what colour is the square ?") -> str:
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True)


def stock_twin(model):
    """Stock LLaVA-OneVision built from the same settings, holding the same weights."""
    settings = {k: v for k, v in model.config.to_dict().items() if not k.startswith("vqtoken_")}
    for key in ("model_type", "architectures", "auto_map", "transformers_version"):
        settings.pop(key, None)
    stock = LlavaOnevisionForConditionalGeneration(LlavaOnevisionConfig(**settings)).eval()
    result = stock.load_state_dict(model.state_dict(), strict=False)
    assert result.missing_keys == []
    assert all(key.startswith("model.vq_attention.") for key in result.unexpected_keys)
    return stock


def stock_processor(processor) -> LlavaOnevisionProcessor:
    """The stock LLaVA-OneVision processor holding the tokenizer, image and video processors of `processor`."""
    stock = processor.to_onevision_processor()
    assert type(stock) is LlavaOnevisionProcessor
    return stock
