"""
VQToken for vLLM: an out-of-tree model plugin, so that `vllm serve <VQToken folder>` and `vllm.LLM(<VQToken folder>)`
serve our converted folders with vLLM's continuous batching, paged KV cache and parallelism.

vLLM finds the plugin through the `vllm.general_plugins` entry point of this package and calls [`register`] in every
process it starts. Two ways a video reaches the model:

- **frames** (`multi_modal_data={"video": frames}` or a `video_url`): the engine runs tower -> projector -> cosine
  K-means -> codebook or VQ-Attention -> newline, with our kernels and the configured seed. vLLM sizes a prompt
  before it encodes anything, so this needs a fixed K (`vqtoken_selection_method="fixed"`): `K + 1` placeholders in
  mode `"centroids"`, `max(T, K) + 1` in mode `"attention"`, `196 * T + 1` in mode `"off"` (stock OneVision).
- **precomputed** (needs `enable_mm_embeds=True`): the contents of a `.vqt` file (`vqtoken encode`; any K, adaptive
  included: the count is read off the file), or the video tokens themselves as a `(num_tokens, hidden_size)` tensor.
  `vqtoken.vllm_plugin.vqt_inputs` builds what `multi_modal_data` and the OpenAI-compatible server take from a `.vqt`.

This module imports nothing at load time: the model class is registered by its path and imported only when vLLM builds
it (no device is touched while plugins load).
"""

ARCHITECTURE = "VQTokenLlavaOnevisionForConditionalGeneration"
MODEL_CLASS_PATH = "vqtoken.vllm_plugin.model:VQTokenLlavaOnevisionForConditionalGeneration"


def register():
    """
    Registers the VQToken architecture with vLLM (the `vllm.general_plugins` entry point). Idempotent: vLLM calls it
    in every process it starts, possibly more than once.
    """
    from vllm import ModelRegistry

    from .. import register as register_auto_classes

    # vLLM reads config.json with AutoConfig: our model_type must be known before any folder is opened
    register_auto_classes()
    if ARCHITECTURE not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model(ARCHITECTURE, MODEL_CLASS_PATH)


__all__ = ["ARCHITECTURE", "register"]
