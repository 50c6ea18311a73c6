"""
The vLLM model class of VQToken on LLaVA-OneVision: vLLM's own LLaVA-OneVision (its SigLIP tower, projector and
Qwen2 language model, with their tensor and pipeline parallelism), plus our VQ-Attention, loading our folders.

Only the video encoder differs from stock, and it is ours, not a copy: after vLLM's tower and projector, the frames go
through `VQTokenLlavaOnevisionModel.quantize_frame_features` (cosine K-means with our kernels and the configured seed)
and `video_outputs_from_codebooks` (codebook or VQ-Attention, then the newline), the very methods the Transformers
model runs. `.vqt` files reach the second one directly. Mode `"off"` is stock vLLM OneVision.
"""

import torch
from torch import nn
from vllm.config import VllmConfig
from vllm.model_executor.models.llava_onevision import (
    LlavaOnevisionDummyInputsBuilder,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionVideoPixelInputs,
)
from vllm.model_executor.models.utils import WeightsMapper
from vllm.multimodal import MULTIMODAL_REGISTRY

from ..modeling.modeling_vqtoken_llava_onevision import VQTokenLlavaOnevisionModel
from ..modeling.vqtoken_attention import VQTokenAttention
from .processing import (
    ADAPTIVE_K_MESSAGE,
    CODEBOOK_FIELD,
    INDEX_MAP_FIELD,
    VQTokenMultiModalProcessor,
    VQTokenProcessingInfo,
)


@MULTIMODAL_REGISTRY.register_processor(
    VQTokenMultiModalProcessor,
    info=VQTokenProcessingInfo,
    dummy_inputs=LlavaOnevisionDummyInputsBuilder,
)
class VQTokenLlavaOnevisionForConditionalGeneration(LlavaOnevisionForConditionalGeneration):
    """
    vLLM's LLaVA-OneVision with VQToken video compression, for folders saved by the Transformers
    `VQTokenLlavaOnevisionForConditionalGeneration` (weight names as that model names them, `vq_attention` included).
    A video reaches the language model as `K + 1` (centroids) or `max(T, K) + 1` (attention) tokens.
    """

    hf_to_vllm_mapper = WeightsMapper(
        orig_to_new_prefix={
            "model.language_model.": "language_model.model.",
            # Transformers 5 names the SigLIP tower's modules without the `vision_model.` level that vLLM's has
            "model.vision_tower.": "vision_tower.vision_model.",
            "model.multi_modal_projector.": "multi_modal_projector.",
            "model.image_newline": "image_newline",
            "model.vq_attention.": "vq_attention.",
            "lm_head.": "language_model.lm_head.",
        }
    )

    # The Transformers model's own quantization steps. They read `config`, `image_newline` and `vq_attention`, which
    # this class holds under the same names.
    quantize_frame_features = VQTokenLlavaOnevisionModel.quantize_frame_features
    video_outputs_from_codebooks = VQTokenLlavaOnevisionModel.video_outputs_from_codebooks

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = ""):
        config = vllm_config.model_config.hf_config
        frames_allowed = vllm_config.model_config.get_multimodal_config().get_limit_per_prompt("video") > 0
        if config.vqtoken_mode != "off" and config.vqtoken_selection_method != "fixed" and frames_allowed:
            raise ValueError(ADAPTIVE_K_MESSAGE.format(method=config.vqtoken_selection_method))
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        self.vq_attention = VQTokenAttention(self.config)
        if self.image_newline.is_meta:
            # with images and frames both disabled (serving .vqt files only, `--limit-mm-per-prompt` 0) vLLM builds no
            # tower, and the newline with it; the tokens of a .vqt end with it
            self.image_newline = nn.Parameter(torch.empty(self.config.text_config.hidden_size))

    def _process_video_pixels(self, inputs: LlavaOnevisionVideoPixelInputs) -> list[torch.Tensor]:
        """
        Args:
            inputs: `pixel_values_videos`, a `(num_videos, num_frames, 3, height, width)` tensor, or a list of
                `(num_frames_i, 3, height, width)` tensors when the videos' frame counts differ.

        Returns:
            one `(num_tokens_i, hidden_size)` tensor per video: stock OneVision's tokens in mode `"off"`, else the
            VQToken tokens, newline included.
        """
        if self.config.vqtoken_mode == "off":
            return super()._process_video_pixels(inputs)
        videos = inputs["pixel_values_videos"]
        batches = [videos] if isinstance(videos, torch.Tensor) else [video[None] for video in videos]
        video_tokens = []
        for pixels in batches:
            num_videos, num_frames = pixels.shape[:2]
            frame_features = self.multi_modal_projector(
                self._image_pixels_to_features(self.vision_tower, pixels.flatten(0, 1))
            )
            if self.config.vqtoken_spatial_pool:
                frame_features = self.apply_pooling(frame_features)
            quantized = self.quantize_frame_features(frame_features.unflatten(0, (num_videos, num_frames)))
            video_tokens += quantized.pooler_output
        return video_tokens

    def embed_multimodal(self, **kwargs: object):
        """The tokens of every multimodal item of the batch, in order. vLLM groups items by their fields, so one call
        holds `.vqt` videos only, video embeddings only, or stock inputs (frames, images) only."""
        codebooks = kwargs.get(CODEBOOK_FIELD)
        if codebooks is not None:
            outputs = self.video_outputs_from_codebooks(list(codebooks), list(kwargs[INDEX_MAP_FIELD]))
            return tuple(outputs.pooler_output)
        video_embeds = kwargs.get("video_embeds")
        if video_embeds is not None:
            return tuple(video_embeds)
        return super().embed_multimodal(**kwargs)


__all__ = ["VQTokenLlavaOnevisionForConditionalGeneration"]
