# Copyright 2026 The VQToken for Transformers authors. Licensed under the Apache License, Version 2.0.
"""
Configuration of VQToken on LLaVA-OneVision: the stock OneVision configuration plus the video-token quantizer.

The `vqtoken_*` fields are the one source of truth for the quantizer's settings: their choices are the `Literal` types
of `vqtoken_choices.py` (read with `typing.get_args`, as the command line does), each value is checked when it is
assigned, and the
checks that involve several fields run after construction and before use ([`check_vqtoken_settings`]). A rejected
value raises a `ValueError` that names the field and what it accepts, whatever the path it came in by.
"""

import difflib
from dataclasses import fields
from typing import get_args

from huggingface_hub.dataclasses import strict, validated_field
from huggingface_hub.errors import StrictDataclassError
from transformers import LlavaOnevisionConfig

from .vqtoken_choices import VQTokenKMeansBackend, VQTokenMode, VQTokenSelectionMethod


class VQTokenSettingError(ValueError):
    """A `vqtoken_*` setting that is not allowed; the message names the field and what it accepts."""


def _positive_integer(name: str):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise VQTokenSettingError(f"`{name}` must be a positive integer, got {value!r}.")

    return check


def _non_negative_integer(name: str):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise VQTokenSettingError(f"`{name}` must be an integer >= 0, got {value!r}.")

    return check


def _number_in(name: str, low: float, high: float | None, description: str):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise VQTokenSettingError(f"`{name}` must be {description}, got {value!r}.")
        if not (value >= low and (high is None or value < high)):
            raise VQTokenSettingError(f"`{name}` must be {description}, got {value!r}.")

    return check


def _boolean(name: str):
    def check(value):
        if not isinstance(value, bool):
            raise VQTokenSettingError(f"`{name}` must be True or False, got {value!r}.")

    return check


@strict
class VQTokenLlavaOnevisionConfig(LlavaOnevisionConfig):
    r"""
    Configuration of [`VQTokenLlavaOnevisionForConditionalGeneration`]. It holds every field of
    [`~transformers.LlavaOnevisionConfig`] and the settings of the video-token quantizer, named as the released VQToken
    runtime and lmms-eval name them.

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

    vqtoken_mode: VQTokenMode = "attention"
    vqtoken_selection_method: VQTokenSelectionMethod = "fixed"
    vqtoken_min_clusters: int = validated_field(_positive_integer("vqtoken_min_clusters"), default=12)
    vqtoken_max_clusters: int = validated_field(_positive_integer("vqtoken_max_clusters"), default=32)
    vqtoken_spatial_pool: bool = validated_field(_boolean("vqtoken_spatial_pool"), default=False)
    vqtoken_max_iterations: int = validated_field(_positive_integer("vqtoken_max_iterations"), default=100)
    vqtoken_tolerance: float = validated_field(_number_in("vqtoken_tolerance", 0, None, "a number >= 0"), default=1e-4)
    vqtoken_seed: int = validated_field(_non_negative_integer("vqtoken_seed"), default=0)
    vqtoken_kmeans_backend: VQTokenKMeansBackend = "auto"
    vqtoken_attention_heads: int = validated_field(_positive_integer("vqtoken_attention_heads"), default=8)
    vqtoken_attention_intermediate_size: int = validated_field(
        _positive_integer("vqtoken_attention_intermediate_size"), default=2048
    )
    vqtoken_attention_dropout: float = validated_field(
        _number_in("vqtoken_attention_dropout", 0, 1, "a number in [0, 1)"), default=0.1
    )

    def __post_init__(self, **kwargs):
        self.reject_unknown_settings(kwargs)
        super().__post_init__(**kwargs)

    @classmethod
    def vqtoken_setting_names(cls) -> tuple[str, ...]:
        """The names of every `vqtoken_*` field."""
        return tuple(item.name for item in fields(cls) if item.name.startswith("vqtoken_"))

    @classmethod
    def reject_unknown_settings(cls, settings: dict):
        """Raises [`VQTokenSettingError`] for a `vqtoken_*` name in `settings` that is not a field, with the nearest
        valid name."""
        known = cls.vqtoken_setting_names()
        for name in settings:
            if name.startswith("vqtoken_") and name not in known:
                nearest = difflib.get_close_matches(name, known, n=1)
                hint = f" Did you mean `{nearest[0]}`?" if nearest else ""
                raise VQTokenSettingError(f"Unknown setting `{name}`.{hint} Known settings: {', '.join(known)}.")

    def validate_vqtoken_settings(self):
        """
        The checks that involve several fields (run by `@strict` after construction and before saving, and by the
        model before it clusters, since fields may be assigned one by one in between). Raises
        [`VQTokenSettingError`].
        """
        adaptive = self.vqtoken_selection_method != "fixed"
        if adaptive and self.vqtoken_min_clusters > self.vqtoken_max_clusters:
            raise VQTokenSettingError(
                f"`vqtoken_min_clusters` ({self.vqtoken_min_clusters}) must not exceed `vqtoken_max_clusters` "
                f"({self.vqtoken_max_clusters}) with `vqtoken_selection_method={self.vqtoken_selection_method!r}`."
            )
        if adaptive and self.vqtoken_max_clusters - self.vqtoken_min_clusters < 2:
            raise VQTokenSettingError(
                f"`vqtoken_selection_method={self.vqtoken_selection_method!r}` needs at least three candidate K: "
                f"`vqtoken_max_clusters - vqtoken_min_clusters` must be >= 2, got "
                f"{self.vqtoken_min_clusters}..{self.vqtoken_max_clusters}."
            )
        hidden_size = self.text_config.hidden_size
        if hidden_size % self.vqtoken_attention_heads:
            raise VQTokenSettingError(
                f"`vqtoken_attention_heads` ({self.vqtoken_attention_heads}) must divide the text hidden size "
                f"({hidden_size})."
            )

    def with_vqtoken_settings(self, **settings) -> "VQTokenLlavaOnevisionConfig":
        """A copy of this configuration with `settings` (`vqtoken_*` fields) applied and checked."""
        self.reject_unknown_settings(settings)
        non_settings = sorted(name for name in settings if not name.startswith("vqtoken_"))
        if non_settings:
            raise VQTokenSettingError(f"Only `vqtoken_*` settings can be overridden here, got {non_settings}.")
        return type(self)(**{**self.to_dict(), **settings})

    @classmethod
    def from_onevision_config(cls, config: LlavaOnevisionConfig, **settings) -> "VQTokenLlavaOnevisionConfig":
        """The VQToken configuration of a stock LLaVA-OneVision one, with `settings` (`vqtoken_*` fields) applied."""
        cls.reject_unknown_settings(settings)
        values = config.to_dict()
        for key in ("model_type", "architectures", "transformers_version", "auto_map"):
            values.pop(key, None)
        return cls(**{**values, **settings})

    @property
    def vqtoken_tokens_per_frame(self) -> int:
        """Number of tokens one frame contributes to clustering: the patch grid, halved per side when pooled."""
        grid = self.vision_config.image_size // self.vision_config.patch_size
        if self.vqtoken_spatial_pool:
            grid = -(-grid // 2)
        return grid * grid


def _raise_setting_errors_as_value_errors(cls):
    """
    `@strict` wraps a rejected value in a `StrictDataclassError`, which is not a `ValueError`. The VQToken settings
    promise a `ValueError` naming the field and its allowed values, so both entry points of strict validation
    (assigning a field, and `validate()`, which runs after construction and before saving) raise
    [`VQTokenSettingError`] for them instead; errors of the other fields are left as transformers raises them.
    """
    strict_setattr, strict_validate = cls.__setattr__, cls.validate
    choices = {item.name: get_args(item.type) for item in fields(cls) if item.name.startswith("vqtoken_")}

    def __setattr__(self, name, value):
        try:
            strict_setattr(self, name, value)
        except StrictDataclassError as error:
            if isinstance(error.__cause__, VQTokenSettingError):
                raise error.__cause__ from None
            if choices.get(name):
                allowed = ", ".join(repr(choice) for choice in choices[name])
                nearest = difflib.get_close_matches(str(value), choices[name], n=1)
                hint = f" Did you mean {nearest[0]!r}?" if nearest else ""
                raise VQTokenSettingError(f"`{name}` must be one of {allowed}, got {value!r}.{hint}") from None
            if name.startswith("vqtoken_"):
                raise VQTokenSettingError(f"`{name}`: {error.__cause__}") from None
            raise

    def validate(self):
        try:
            strict_validate(self)
        except StrictDataclassError as error:
            if isinstance(error.__cause__, VQTokenSettingError):
                raise error.__cause__ from None
            raise

    cls.__setattr__ = __setattr__
    cls.validate = validate
    return cls


_raise_setting_errors_as_value_errors(VQTokenLlavaOnevisionConfig)

__all__ = ["VQTokenLlavaOnevisionConfig", "VQTokenSettingError"]

VQTokenLlavaOnevisionConfig.register_for_auto_class()
