"""
VQToken for Transformers: extreme video-token reduction for LLaVA-OneVision.

Importing this package registers the VQToken classes with the Auto classes, so that a VQToken folder or Hub repository
loads without `trust_remote_code`.
"""

from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText, AutoProcessor

from .modeling.configuration_vqtoken_llava_onevision import VQTokenLlavaOnevisionConfig
from .modeling.modeling_vqtoken_llava_onevision import (
    VQTokenLlavaOnevisionForConditionalGeneration,
    VQTokenLlavaOnevisionModel,
    VQTokenVideoOutput,
)
from .modeling.pipeline_vqtoken_llava_onevision import VIDEO_PIPELINE_TASK, VQTokenVideoTextToTextPipeline
from .modeling.processing_vqtoken_llava_onevision import VQTokenLlavaOnevisionProcessor
from .modeling.vqtoken_kmeans import VideoQuantization, quantize_video_tokens


__version__ = "0.1.0"

SUPPORTED_TRANSFORMERS = ">=5.18,<5.25"


def _register_auto_classes():
    model_type = VQTokenLlavaOnevisionConfig.model_type
    AutoConfig.register(model_type, VQTokenLlavaOnevisionConfig, exist_ok=True)
    AutoModel.register(VQTokenLlavaOnevisionConfig, VQTokenLlavaOnevisionForConditionalGeneration, exist_ok=True)
    AutoModelForImageTextToText.register(
        VQTokenLlavaOnevisionConfig, VQTokenLlavaOnevisionForConditionalGeneration, exist_ok=True
    )
    import transformers

    if hasattr(transformers, "AutoModelForMultimodalLM"):
        transformers.AutoModelForMultimodalLM.register(
            VQTokenLlavaOnevisionConfig, VQTokenLlavaOnevisionForConditionalGeneration, exist_ok=True
        )
    AutoProcessor.register(VQTokenLlavaOnevisionConfig, VQTokenLlavaOnevisionProcessor, exist_ok=True)


_register_auto_classes()


def _register_pipeline():
    from transformers.pipelines import PIPELINE_REGISTRY

    PIPELINE_REGISTRY.register_pipeline(
        VIDEO_PIPELINE_TASK,
        pipeline_class=VQTokenVideoTextToTextPipeline,
        pt_model=AutoModelForImageTextToText,
        type="multimodal",
    )


_register_pipeline()

__all__ = [
    "VQTokenLlavaOnevisionConfig",
    "VQTokenLlavaOnevisionForConditionalGeneration",
    "VQTokenLlavaOnevisionModel",
    "VQTokenLlavaOnevisionProcessor",
    "VQTokenVideoOutput",
    "VQTokenVideoTextToTextPipeline",
    "VideoQuantization",
    "quantize_video_tokens",
]
