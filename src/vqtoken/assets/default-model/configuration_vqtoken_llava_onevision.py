# Copyright 2026 The VQToken for Transformers authors. Licensed under the Apache License, Version 2.0.
"""Configuration of VQToken on LLaVA-OneVision: the stock OneVision configuration plus the video-token quantizer."""

from huggingface_hub.dataclasses import strict
from transformers import LlavaOnevisionConfig


VQTOKEN_MODES = ("attention", "centroids", "off")
VQTOKEN_SELECTION_METHODS = ("fixed", "elbow", "elbow_corrected", "silhouette")
VQTOKEN_KMEANS_BACKENDS = ("auto", "torch", "triton")


@strict
class VQTokenLlavaOnevisionConfig(LlavaOnevisionConfig):
    r"""
    Configuration of [`VQTokenLlavaOnevisionForConditionalGeneration`]. It holds every field of
    [`~transformers.LlavaOnevisionConfig`] and the settings of the video-token quantizer, named as the released VQToken
    runtime and lmms-eval name them. Every value is checked when the configuration is built.

    vqtoken_mode (`str`, *optional*, defaults to `"attention"`):
        What the language model receives for a video. `"attention"`: the learned VQ-Attention output, `max(T, K)`
        tokens; `"centroids"`: the `K` codebook entries; `"off"`: the stock OneVision video tokens (no compression).
        Every mode appends one `image_newline` token.
    vqtoken_selection_method (`str`, *optional*, defaults to `"fixed"`):
        How the number of clusters `K` is chosen per video. `"fixed"`: `K = vqtoken_max_clusters`; `"elbow"`: the
        released rule on the distortion curve, `K = max(min_clusters, argmax(d2) + 4)`; `"elbow_corrected"`: the
        candidate at the point of largest second difference; `"silhouette"`: the candidate with the best mean cosine
        silhouette.
    vqtoken_min_clusters (`int`, *optional*, defaults to 12):
        Smallest candidate `K` of the adaptive selection methods (unused by `"fixed"`).
    vqtoken_max_clusters (`int`, *optional*, defaults to 32):
        `K` of `"fixed"`, and the largest candidate of the adaptive methods.
    vqtoken_spatial_pool (`bool`, *optional*, defaults to `False`):
        `False` clusters all `T * H * W` projected tokens as the release does; `True` applies the stock 2x2 bilinear
        pooling of OneVision to every frame first.
    vqtoken_max_iterations (`int`, *optional*, defaults to 100):
        Iteration cap of every K-means fit.
    vqtoken_tolerance (`float`, *optional*, defaults to 1e-4):
        A fit stops when the Frobenius norm of the centroid shift falls below this value.
    vqtoken_seed (`int`, *optional*, defaults to 0):
        Seed of the k-means++ initialisation. The same video and seed give the same tokens, alone or in a batch.
    vqtoken_kmeans_backend (`str`, *optional*, defaults to `"auto"`):
        `"torch"` everywhere, `"triton"` (CUDA tensors, or CPU under `TRITON_INTERPRET=1`), or `"auto"`: Triton for
        CUDA tensors when Triton is installed, torch otherwise.
    vqtoken_attention_heads (`int`, *optional*, defaults to 8):
        Attention heads of the VQ-Attention decoder layer.
    vqtoken_attention_intermediate_size (`int`, *optional*, defaults to 2048):
        Feed-forward width of the VQ-Attention decoder layer.
    vqtoken_attention_dropout (`float`, *optional*, defaults to 0.1):
        Dropout of the VQ-Attention decoder layer during training (the released layer used PyTorch's default).
    """

    model_type = "vqtoken_llava_onevision"

    vqtoken_mode: str = "attention"
    vqtoken_selection_method: str = "fixed"
    vqtoken_min_clusters: int = 12
    vqtoken_max_clusters: int = 32
    vqtoken_spatial_pool: bool = False
    vqtoken_max_iterations: int = 100
    vqtoken_tolerance: float = 1e-4
    vqtoken_seed: int = 0
    vqtoken_kmeans_backend: str = "auto"
    vqtoken_attention_heads: int = 8
    vqtoken_attention_intermediate_size: int = 2048
    vqtoken_attention_dropout: float = 0.1

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.validate_vqtoken()

    def validate_vqtoken(self):
        """Raises `ValueError` naming the first VQToken field whose value is not allowed."""
        choices = {
            "vqtoken_mode": VQTOKEN_MODES,
            "vqtoken_selection_method": VQTOKEN_SELECTION_METHODS,
            "vqtoken_kmeans_backend": VQTOKEN_KMEANS_BACKENDS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"`{name}` must be one of {allowed}, got {getattr(self, name)!r}.")
        positive = ("vqtoken_min_clusters", "vqtoken_max_clusters", "vqtoken_max_iterations", "vqtoken_attention_heads")
        for name in positive + ("vqtoken_attention_intermediate_size",):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        adaptive = self.vqtoken_selection_method != "fixed"
        if adaptive and self.vqtoken_min_clusters > self.vqtoken_max_clusters:
            raise ValueError(
                f"`vqtoken_min_clusters` ({self.vqtoken_min_clusters}) must not exceed `vqtoken_max_clusters` "
                f"({self.vqtoken_max_clusters}) with `vqtoken_selection_method={self.vqtoken_selection_method!r}`."
            )
        if adaptive and self.vqtoken_max_clusters - self.vqtoken_min_clusters < 2:
            raise ValueError(
                f"`vqtoken_selection_method={self.vqtoken_selection_method!r}` needs at least three candidate K: "
                f"`vqtoken_max_clusters - vqtoken_min_clusters` must be >= 2, got "
                f"{self.vqtoken_min_clusters}..{self.vqtoken_max_clusters}."
            )
        if not isinstance(self.vqtoken_tolerance, (int, float)) or not self.vqtoken_tolerance >= 0:
            raise ValueError(f"`vqtoken_tolerance` must be a number >= 0, got {self.vqtoken_tolerance!r}.")
        if not isinstance(self.vqtoken_attention_dropout, (int, float)) or not 0 <= self.vqtoken_attention_dropout < 1:
            raise ValueError(f"`vqtoken_attention_dropout` must lie in [0, 1), got {self.vqtoken_attention_dropout!r}.")
        if isinstance(self.vqtoken_seed, bool) or not isinstance(self.vqtoken_seed, int) or self.vqtoken_seed < 0:
            raise ValueError(f"`vqtoken_seed` must be an integer >= 0, got {self.vqtoken_seed!r}.")
        if not isinstance(self.vqtoken_spatial_pool, bool):
            raise ValueError(f"`vqtoken_spatial_pool` must be True or False, got {self.vqtoken_spatial_pool!r}.")
        hidden_size = self.text_config.hidden_size
        if hidden_size % self.vqtoken_attention_heads:
            raise ValueError(
                f"`vqtoken_attention_heads` ({self.vqtoken_attention_heads}) must divide the text hidden size "
                f"({hidden_size})."
            )

    @property
    def vqtoken_tokens_per_frame(self) -> int:
        """Number of tokens one frame contributes to clustering: the patch grid, halved per side when pooled."""
        grid = self.vision_config.image_size // self.vision_config.patch_size
        if self.vqtoken_spatial_pool:
            grid = -(-grid // 2)
        return grid * grid


__all__ = ["VQTokenLlavaOnevisionConfig"]

VQTokenLlavaOnevisionConfig.register_for_auto_class()
