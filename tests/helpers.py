"""Small shared helpers of the test suite."""

import numpy as np


def random_clip(seed: int, num_frames: int = 4, size: int = 32) -> np.ndarray:
    """A random uint8 clip `(num_frames, size, size, 3)`."""
    return np.random.default_rng(seed).integers(0, 256, (num_frames, size, size, 3), dtype=np.uint8)


def video_prompt(processor, question: str = "what colour is the square ?") -> str:
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True)
