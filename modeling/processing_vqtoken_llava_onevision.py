# Copyright 2026 The VQToken for Transformers authors. Licensed under the Apache License, Version 2.0.
"""Processor of VQToken on LLaVA-OneVision: stock OneVision processing, with the video placeholder count of VQToken."""

from transformers import LlavaOnevisionProcessor
from transformers.processing_utils import MultiModalData

from .configuration_vqtoken_llava_onevision import VQTokenLlavaOnevisionConfig
from .video_io import DEFAULT_NUM_FRAMES
from .vqtoken_choices import VQTOKEN_MODES


def quantized_video_tokens(mode: str, num_frames: int, num_clusters: int) -> int:
    """Tokens the language model reads for a video of `num_frames` frames quantized into `num_clusters` clusters, the
    newline included: `K + 1` in mode `"centroids"`, `max(T, K) + 1` in mode `"attention"`."""
    if mode == "centroids":
        return num_clusters + 1
    if mode == "attention":
        return max(num_frames, num_clusters) + 1
    raise ValueError(f"vqtoken_mode={mode!r} does not quantize videos.")


# what a stock `LlavaOnevisionProcessor` is made of, passed as they are between it and ours
ONEVISION_PROCESSOR_ARGUMENTS = (
    "image_processor",
    "tokenizer",
    "video_processor",
    "chat_template",
    "num_image_tokens",
    "vision_feature_select_strategy",
    "image_token",
    "video_token",
    "vision_aspect_ratio",
)


def _onevision_arguments(processor) -> dict:
    return {name: getattr(processor, name) for name in ONEVISION_PROCESSOR_ARGUMENTS}


class VQTokenLlavaOnevisionProcessor(LlavaOnevisionProcessor):
    r"""
    Tokenizer, image processor and video processor of LLaVA-OneVision. Each `<video>` of a prompt is expanded to the
    number of tokens the model produces for it:

    - `vqtoken_mode="off"`: `num_frames * 196 + 1`, as stock OneVision;
    - `"centroids"`: `vqtoken_max_clusters + 1`;
    - `"attention"`: `max(num_frames, vqtoken_max_clusters) + 1`.

    With an adaptive selection method the model may choose fewer clusters; `generate` rewrites the placeholder runs
    to the actual counts, so the processor writes the count for `vqtoken_max_clusters`.

    Args:
        vqtoken_mode (`str`, *optional*): as in the model configuration (default: the configuration's default).
        vqtoken_max_clusters (`int`, *optional*): as in the model configuration (default: the configuration's).
    """

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        video_processor=None,
        num_image_tokens=None,
        vision_feature_select_strategy=None,
        chat_template=None,
        image_token="<image>",
        video_token="<video>",
        vision_aspect_ratio="anyres_max_9",
        vqtoken_mode=None,
        vqtoken_max_clusters=None,
        **kwargs,
    ):
        # a dataclass keeps each field's default as the class attribute
        vqtoken_mode = VQTokenLlavaOnevisionConfig.vqtoken_mode if vqtoken_mode is None else vqtoken_mode
        if vqtoken_max_clusters is None:
            vqtoken_max_clusters = VQTokenLlavaOnevisionConfig.vqtoken_max_clusters
        if vqtoken_mode not in VQTOKEN_MODES:
            raise ValueError(f"`vqtoken_mode` must be one of {VQTOKEN_MODES}, got {vqtoken_mode!r}.")
        if (
            isinstance(vqtoken_max_clusters, bool)
            or not isinstance(vqtoken_max_clusters, int)
            or vqtoken_max_clusters < 1
        ):
            raise ValueError(f"`vqtoken_max_clusters` must be a positive integer, got {vqtoken_max_clusters!r}.")
        self.vqtoken_mode = vqtoken_mode
        self.vqtoken_max_clusters = vqtoken_max_clusters
        super().__init__(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=video_processor,
            num_image_tokens=num_image_tokens,
            vision_feature_select_strategy=vision_feature_select_strategy,
            chat_template=chat_template,
            image_token=image_token,
            video_token=video_token,
            vision_aspect_ratio=vision_aspect_ratio,
            **kwargs,
        )

    @classmethod
    def from_onevision_processor(
        cls, processor, vqtoken_mode: str | None = None, vqtoken_max_clusters: int | None = None, **overrides
    ) -> "VQTokenLlavaOnevisionProcessor":
        """
        A VQToken processor reusing the tokenizer, chat template and image and video processors of a stock
        `LlavaOnevisionProcessor`; `overrides` replace any of its other settings (e.g. `num_image_tokens`). The VQ
        settings default to the configuration's defaults.
        """
        return cls(
            vqtoken_mode=vqtoken_mode,
            vqtoken_max_clusters=vqtoken_max_clusters,
            **{**_onevision_arguments(processor), **overrides},
        )

    def to_onevision_processor(self):
        """The stock `LlavaOnevisionProcessor` with this processor's tokenizer, chat template, image and video
        processors and settings (its video placeholder counts are stock's)."""
        return LlavaOnevisionProcessor(**_onevision_arguments(self))

    @property
    def default_num_frames(self) -> int:
        """
        Frames per video the model expects: the `num_frames` of the video processor, saved in the model's folder
        (`processor_config.json`), or the release's 32 when the folder does not say.
        """
        num_frames = getattr(self.video_processor, "num_frames", None)
        return int(num_frames) if num_frames else DEFAULT_NUM_FRAMES

    def num_video_tokens(self, num_frames: int) -> int:
        """Number of placeholder tokens written for a video of `num_frames` frames, the newline included."""
        if self.vqtoken_mode == "off":
            pooled_side = -(-int(self.num_image_tokens**0.5) // 2)
            return num_frames * pooled_side * pooled_side + 1
        return quantized_video_tokens(self.vqtoken_mode, num_frames, self.vqtoken_max_clusters)

    def replace_video_token(self, video_inputs: dict, video_idx: int, **kwargs) -> str:
        processed_video = video_inputs["pixel_values_videos"][video_idx]
        num_frames = len(processed_video) if isinstance(processed_video, (list, tuple)) else processed_video.shape[0]
        return self.video_token * self.num_video_tokens(num_frames)

    def _get_num_multimodal_tokens(self, image_sizes=None, video_sizes=None, **kwargs) -> MultiModalData:
        """Placeholder counts of images (stock) and videos (`num_video_tokens`), as serving engines ask for them."""
        vision_data = super()._get_num_multimodal_tokens(image_sizes=image_sizes, **kwargs)
        if video_sizes is not None:
            vision_data.num_video_tokens = [self.num_video_tokens(num_frames) for num_frames, _, _ in video_sizes]
        return vision_data


__all__ = ["VQTokenLlavaOnevisionProcessor", "quantized_video_tokens"]

VQTokenLlavaOnevisionProcessor.register_for_auto_class()
