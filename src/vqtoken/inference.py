"""
Ask questions about videos with a VQToken model, stage by stage, with the time of each stage.

The one implementation lives in `modeling/vqtoken_inference.py` (`vqtoken.modeling.vqtoken_inference`), because the
`video-text-to-text` pipeline, which ships with the model code for `trust_remote_code`, runs on it. This module
re-exports it.
"""

from .modeling.vqtoken_inference import (
    VideoAnswer,
    answer_prompts,
    ask_video,
    ask_videos,
    decode_videos,
    video_prompt,
)


__all__ = ["VideoAnswer", "answer_prompts", "ask_video", "ask_videos", "decode_videos", "video_prompt"]
