# Copyright 2026 The VQToken for Transformers authors. Licensed under the Apache License, Version 2.0.
"""
VQToken on LLaVA-OneVision: a video reaches the language model as a handful of tokens.

The data path of one video, all in [`VQTokenLlavaOnevisionModel.get_video_features`]:

    frames [T, 3, 384, 384]
      -> vision tower (last kept layer)                 [T, 729, 1152]
      -> multimodal projector                           [T, 729, D]
      -> optional stock 2x2 pooling                     [T, 196, D]
      -> flatten, unit-normalise, cosine K-means        codebook [K, D] + index map [T, 729]
      -> mode "centroids": the codebook                 [K, D]
         mode "attention": VQ-Attention(index map, codebook)  [max(T, K), D]
      -> + image_newline                                [K + 1, D] or [max(T, K) + 1, D]
      -> scattered into the video placeholders of the prompt

Images are not compressed: they follow stock OneVision. Mode `"off"` is stock OneVision for videos too.
"""

from dataclasses import dataclass

import torch
from torch import nn
from transformers import LlavaOnevisionForConditionalGeneration, LlavaOnevisionModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPooling

from .configuration_vqtoken_llava_onevision import VQTokenLlavaOnevisionConfig
from .vqtoken_attention import VQTokenAttention, VQTokenMultiheadAttention
from .vqtoken_kmeans import quantize_video_tokens


try:
    # newer transformers (5.24, not 5.18) capture only the hidden states whose indices `output_hidden_states` names
    from transformers.utils.output_capturing import selected_hidden_states  # noqa: F401

    SELECTS_HIDDEN_STATES = True
except ImportError:
    SELECTS_HIDDEN_STATES = False


REMOTE_CODE_AUTO_CLASSES = ("AutoModel", "AutoModelForImageTextToText", "AutoModelForMultimodalLM")

# transformers saves stock LLaVA-OneVision in the Hub layout and renames it on load for its own classes only; a
# custom-code class gets no renaming, so without this map a stock checkpoint would load with a random language model.
STOCK_ONEVISION_KEY_MAPPING = {
    r"^language_model\.model\.": "model.language_model.",
    r"^language_model\.lm_head\.": "lm_head.",
    r"^vision_tower\.": "model.vision_tower.",
    r"^multi_modal_projector\.": "model.multi_modal_projector.",
    r"^image_newline$": "model.image_newline",
}


@dataclass
class VQTokenVideoOutput(BaseModelOutputWithPooling):
    r"""
    Output of [`VQTokenLlavaOnevisionModel.get_video_features`] in the `"centroids"` and `"attention"` modes.

    pooler_output (`list[torch.Tensor]`, one per video, of shape `(num_video_tokens_i, hidden_size)`):
        The tokens the language model reads for each video, `image_newline` included.
    codebooks (`list[torch.Tensor]`, one per video, of shape `(num_clusters_i, hidden_size)`):
        Mean of the unit-normalised projected tokens of each cluster (zero for an empty cluster).
    index_maps (`list[torch.LongTensor]`, one per video, of shape `(num_frames, tokens_per_frame)`):
        The cluster id of every token of every frame (the token-hash index map).
    num_clusters (`torch.LongTensor` of shape `(num_videos,)`):
        The number of clusters chosen for each video.
    """

    codebooks: list[torch.Tensor] | None = None
    index_maps: list[torch.Tensor] | None = None
    num_clusters: torch.LongTensor | None = None


class VQTokenLlavaOnevisionModel(LlavaOnevisionModel):
    """LLaVA-OneVision whose video features are a VQToken codebook (optionally mixed by VQ-Attention)."""

    config_class = VQTokenLlavaOnevisionConfig

    def __init__(self, config: VQTokenLlavaOnevisionConfig):
        super().__init__(config)
        self.vq_attention = VQTokenAttention(config)
        self.post_init()

    @classmethod
    def is_custom_code(cls) -> bool:
        """
        `False`: transformers treats custom code as code whose `_init_weights` writes parameters in place, and then
        skips every module without parameters of its own when it initialises weights missing from a checkpoint, which
        would skip the SigLIP attention and MLP initialisation. This model initialises with
        `transformers.initialization`, as transformers' own models do, so missing weights start as in a fresh model.
        """
        return False

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, VQTokenMultiheadAttention):
            init.xavier_uniform_(module.in_proj_weight)
            init.zeros_(module.in_proj_bias)
            init.zeros_(module.out_proj.bias)

    def get_frame_features(
        self,
        pixel_values_videos: torch.Tensor,
        vision_feature_layer: int | list[int] | None = None,
        vision_feature_select_strategy: str | None = None,
    ) -> torch.Tensor:
        """
        Projected vision features of every frame, before any compression.

        Args:
            pixel_values_videos (`torch.Tensor` of shape `(num_videos, num_frames, channels, height, width)`)

        Returns:
            `torch.Tensor` of shape `(num_videos, num_frames, tokens_per_frame, hidden_size)`; `tokens_per_frame` is
            the full patch grid (729 for SigLIP 384/14), or the 2x2-pooled grid when `vqtoken_spatial_pool` is set.
        """
        return self._encode_frames(pixel_values_videos, vision_feature_layer, vision_feature_select_strategy)[1]

    def _encode_frames(
        self,
        pixel_values_videos: torch.Tensor,
        vision_feature_layer: int | list[int] | None = None,
        vision_feature_select_strategy: str | None = None,
        **tower_kwargs,
    ) -> tuple[BaseModelOutputWithPooling, torch.Tensor]:
        """
        The vision tower's output on every frame (`output_hidden_states` / `output_attentions` in `tower_kwargs`
        as the caller asked), and the projected frame features of [`get_frame_features`].
        """
        if vision_feature_layer is None:
            vision_feature_layer = self.config.vision_feature_layer
        if vision_feature_select_strategy is None:
            vision_feature_select_strategy = self.config.vision_feature_select_strategy
        if pixel_values_videos.ndim != 5:
            raise ValueError(
                "`pixel_values_videos` must have shape (num_videos, num_frames, channels, height, width), got "
                f"{tuple(pixel_values_videos.shape)}."
            )
        num_videos, num_frames = pixel_values_videos.shape[:2]
        if not tower_kwargs.get("output_hidden_states"):
            # keep only the selected layer(s): all 27 hidden states of 32 frames hold ~2.9 GB at 384 px in fp32
            tower_kwargs["output_hidden_states"] = vision_feature_layer if SELECTS_HIDDEN_STATES else True
        vision_outputs = self.vision_tower(pixel_values_videos.flatten(0, 1), return_dict=True, **tower_kwargs)
        if isinstance(vision_feature_layer, int):
            selected = vision_outputs.hidden_states[vision_feature_layer]
        else:
            selected = torch.cat([vision_outputs.hidden_states[layer] for layer in vision_feature_layer], dim=-1)
        if vision_feature_select_strategy == "default":
            selected = selected[:, 1:]
        frame_features = self.multi_modal_projector(selected)
        if self.config.vqtoken_spatial_pool:
            frame_features = self.apply_pooling(frame_features)
        return vision_outputs, frame_features.unflatten(0, (num_videos, num_frames))

    def get_video_features(
        self,
        pixel_values_videos: torch.Tensor,
        vision_feature_layer: int | list[int] | None = None,
        vision_feature_select_strategy: str | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> VQTokenVideoOutput | BaseModelOutputWithPooling | tuple:
        """
        Encodes videos into the tokens the language model reads, with stock OneVision's output contract: the vision
        tower's `last_hidden_state`, `hidden_states` and `attentions` (as `output_hidden_states` / `output_attentions`
        ask), the video tokens as `pooler_output`, and a tuple in the same order with `return_dict=False`.

        Args:
            pixel_values_videos (`torch.Tensor` of shape `(num_videos, num_frames, channels, height, width)`)

        Returns:
            In mode `"off"`, the stock OneVision output (`pooler_output` of shape `(num_videos, num_frames * 196 + 1,
            hidden_size)`). Otherwise a [`VQTokenVideoOutput`] whose `pooler_output` holds one `(num_tokens_i,
            hidden_size)` tensor per video, with `num_tokens_i = K_i + 1` (`"centroids"`) or `max(T, K_i) + 1`
            (`"attention"`), followed by the codebooks, index maps and chosen K of every video.
        """
        if self.config.vqtoken_mode == "off":
            return super().get_video_features(
                pixel_values_videos,
                vision_feature_layer=vision_feature_layer,
                vision_feature_select_strategy=vision_feature_select_strategy,
                return_dict=return_dict,
                **kwargs,
            )
        vision_outputs, frame_features = self._encode_frames(
            pixel_values_videos, vision_feature_layer, vision_feature_select_strategy, **kwargs
        )
        quantized = self.quantize_frame_features(frame_features)
        # the tower's fields first, then the video tokens, as stock builds its output (and orders its tuple)
        video_outputs = VQTokenVideoOutput(**vision_outputs)
        for name in ("pooler_output", "codebooks", "index_maps", "num_clusters"):
            video_outputs[name] = quantized[name]
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return video_outputs if return_dict else video_outputs.to_tuple()

    def quantize_frame_features(self, frame_features: torch.Tensor) -> VQTokenVideoOutput:
        """
        Clusters each video's tokens with the configured selection method and builds the tokens of the current mode.

        Args:
            frame_features (`torch.Tensor` of shape `(num_videos, num_frames, tokens_per_frame, hidden_size)`): the
                output of [`~VQTokenLlavaOnevisionModel.get_frame_features`].

        Returns:
            [`VQTokenVideoOutput`].
        """
        self.config.validate_vqtoken_settings()
        num_videos, num_frames, tokens_per_frame, hidden_size = frame_features.shape
        quantization = quantize_video_tokens(
            frame_features.reshape(num_videos, num_frames * tokens_per_frame, hidden_size),
            selection_method=self.config.vqtoken_selection_method,
            min_clusters=self.config.vqtoken_min_clusters,
            max_clusters=self.config.vqtoken_max_clusters,
            max_iterations=self.config.vqtoken_max_iterations,
            tolerance=self.config.vqtoken_tolerance,
            seed=self.config.vqtoken_seed,
            backend=self.config.vqtoken_kmeans_backend,
        )
        codebooks = [
            quantization.codebooks[video, : int(quantization.num_clusters[video])].to(frame_features.dtype)
            for video in range(num_videos)
        ]
        index_maps = list(quantization.index_maps.view(num_videos, num_frames, tokens_per_frame))
        return self.video_outputs_from_codebooks(codebooks, index_maps)

    def video_outputs_from_codebooks(
        self, codebooks: list[torch.Tensor], index_maps: list[torch.Tensor]
    ) -> VQTokenVideoOutput:
        """
        The tokens the language model reads for videos already quantized (freshly, or read back from a cache).

        Args:
            codebooks (`list[torch.Tensor]`, one per video, of shape `(num_clusters_i, hidden_size)`)
            index_maps (`list[torch.LongTensor]`, one per video, of shape `(num_frames_i, tokens_per_frame)`)

        Returns:
            [`VQTokenVideoOutput`]: per video `codebook + newline` (`"centroids"`) or
            `VQ-Attention(index_map, codebook) + newline` (`"attention"`).
        """
        if self.config.vqtoken_mode == "off":
            raise ValueError("`vqtoken_mode='off'` does not use codebooks: set 'centroids' or 'attention'.")
        dtype = self.image_newline.dtype
        video_tokens = []
        for codebook, index_map in zip(codebooks, index_maps, strict=True):
            codebook = codebook.to(self.image_newline.device, dtype)
            index_map = index_map.to(self.image_newline.device)
            if self.config.vqtoken_mode == "attention":
                tokens = self.vq_attention(index_map, codebook)
            else:
                tokens = codebook
            video_tokens.append(torch.cat([tokens, self.image_newline[None, :].to(tokens.dtype)], dim=0))
        return VQTokenVideoOutput(
            pooler_output=video_tokens,
            codebooks=list(codebooks),
            index_maps=list(index_maps),
            num_clusters=torch.tensor([codebook.shape[0] for codebook in codebooks]),
        )

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_sizes: torch.LongTensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        *,
        inputs_embeds: torch.Tensor | None = None,
        vision_feature_layer: int | list[int] | None = None,
        vision_feature_select_strategy: str | None = None,
        batch_num_images: torch.LongTensor | None = None,
        mm_encoder_outputs: dict | None = None,
        **kwargs,
    ):
        """
        Stock OneVision forward, except that compressed videos are encoded here and handed over as precomputed
        features (the stock path expects one equal-length tensor for all videos).

        The arguments after `pixel_values_videos` are keyword-only: stock's fifth positional argument differs between
        transformers versions, and `**kwargs` carries the rest of stock's arguments (`attention_mask`, the cache...).
        `inputs_embeds` is named so that callers inspecting the signature (transformers' common tests) see it.
        """
        compress = pixel_values_videos is not None and self.config.vqtoken_mode != "off"
        if compress:
            if mm_encoder_outputs is not None:
                raise ValueError("Pass either `pixel_values_videos` or `mm_encoder_outputs`, not both.")
            mm_encoder_outputs = {
                "video": self.get_video_features(
                    pixel_values_videos, vision_feature_layer, vision_feature_select_strategy, return_dict=True
                )
            }
            if pixel_values is not None:
                mm_encoder_outputs["image"] = self.get_image_features(
                    pixel_values,
                    image_sizes,
                    vision_feature_layer=vision_feature_layer,
                    vision_feature_select_strategy=vision_feature_select_strategy,
                    batch_num_images=batch_num_images,
                    return_dict=True,
                )
            pixel_values = pixel_values_videos = None
        video_outputs = (mm_encoder_outputs or {}).get("video")
        ragged = video_outputs is not None and isinstance(video_outputs.pooler_output, (list, tuple))
        if ragged:
            # the stock forward scatters one `(videos, tokens, dim)` tensor: hand it the videos' tokens packed
            self._check_video_placeholders(input_ids, video_outputs.pooler_output)
            packed = BaseModelOutputWithPooling(
                pooler_output=torch.cat(list(video_outputs.pooler_output), dim=0)[None]
            )
            mm_encoder_outputs = {**mm_encoder_outputs, "video": packed}
        return_dict = kwargs.pop("return_dict", None)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = super().forward(
            input_ids=input_ids,
            pixel_values=pixel_values,
            image_sizes=image_sizes,
            pixel_values_videos=pixel_values_videos,
            inputs_embeds=inputs_embeds,
            vision_feature_layer=vision_feature_layer,
            vision_feature_select_strategy=vision_feature_select_strategy,
            batch_num_images=batch_num_images,
            mm_encoder_outputs=mm_encoder_outputs,
            return_dict=True,
            **kwargs,
        )
        if ragged and hasattr(outputs, "video_outputs"):
            # callers see one entry per video, as `get_video_features` returned them
            outputs.video_outputs = video_outputs
        elif ragged:
            # transformers < 5.24 returns the video tokens themselves, as `video_hidden_states`
            outputs.video_hidden_states = video_outputs.pooler_output
        return outputs if return_dict else outputs.to_tuple()

    def _check_video_placeholders(self, input_ids: torch.LongTensor | None, video_tokens: list[torch.Tensor]):
        if input_ids is None:
            return
        placeholders = int((input_ids == self.config.video_token_id).sum())
        produced = sum(tokens.shape[0] for tokens in video_tokens)
        if placeholders != produced:
            raise ValueError(
                f"The prompt holds {placeholders} video placeholder tokens but the videos produced {produced} tokens "
                f"({[tokens.shape[0] for tokens in video_tokens]} per video). With an adaptive "
                "`vqtoken_selection_method` the count is known only after encoding: call `generate`, which "
                "reconciles it, or `align_video_placeholders` before `forward`."
            )

    def align_video_placeholders(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.LongTensor | None,
        num_video_tokens: list[int],
        labels: torch.LongTensor | None = None,
        pad_token_id: int = 0,
        padding_side: str = "left",
    ) -> tuple[torch.LongTensor, torch.LongTensor, torch.LongTensor | None]:
        """
        Rewrites every run of video placeholders to the number of tokens its video produced, and re-pads the batch.

        Videos are matched to placeholder runs in order, row by row; two videos of one prompt must be separated by at
        least one other token (chat templates do this).

        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`)
            attention_mask (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*): padding mask.
            num_video_tokens (`list[int]`): tokens produced by each video of the batch, in order.
            labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*): rewritten alongside;
                video positions get -100.
            pad_token_id (`int`): id written at padded positions.
            padding_side (`str`): `"left"` (generation) or `"right"`.

        Returns:
            `(input_ids, attention_mask, labels)` of shape `(batch_size, new_sequence_length)`; `labels` is `None`
            when none were given.
        """
        if padding_side not in ("left", "right"):
            raise ValueError(f"`padding_side` must be 'left' or 'right', got {padding_side!r}.")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        video_token_id = self.config.video_token_id
        rows, label_rows = [], []
        video = 0
        for row in range(input_ids.shape[0]):
            keep = attention_mask[row].bool()
            ids = input_ids[row][keep]
            row_labels = labels[row][keep] if labels is not None else None
            is_video = ids == video_token_id
            starts = torch.nonzero(is_video & ~torch.cat([is_video.new_zeros(1), is_video[:-1]])).flatten().tolist()
            ends = torch.nonzero(is_video & ~torch.cat([is_video[1:], is_video.new_zeros(1)])).flatten().tolist()
            pieces, label_pieces, cursor = [], [], 0
            for start, end in zip(starts, ends):
                if video >= len(num_video_tokens):
                    raise ValueError(
                        f"Row {row} of `input_ids` has more video placeholder runs than the {len(num_video_tokens)} "
                        "videos given."
                    )
                count = num_video_tokens[video]
                pieces += [ids[cursor:start], ids.new_full((count,), video_token_id)]
                if row_labels is not None:
                    label_pieces += [row_labels[cursor:start], row_labels.new_full((count,), -100)]
                cursor = end + 1
                video += 1
            pieces.append(ids[cursor:])
            rows.append(torch.cat(pieces))
            if row_labels is not None:
                label_pieces.append(row_labels[cursor:])
                label_rows.append(torch.cat(label_pieces))
        if video != len(num_video_tokens):
            raise ValueError(
                f"`input_ids` holds {video} runs of video placeholders but {len(num_video_tokens)} videos were given."
            )
        length = max(row.shape[0] for row in rows)
        new_ids = input_ids.new_full((len(rows), length), pad_token_id)
        new_mask = attention_mask.new_zeros((len(rows), length))
        new_labels = labels.new_full((len(rows), length), -100) if labels is not None else None
        for index, row in enumerate(rows):
            span = slice(length - row.shape[0], length) if padding_side == "left" else slice(0, row.shape[0])
            new_ids[index, span] = row
            new_mask[index, span] = 1
            if new_labels is not None:
                new_labels[index, span] = label_rows[index]
        return new_ids, new_mask, new_labels


class VQTokenLlavaOnevisionForConditionalGeneration(LlavaOnevisionForConditionalGeneration):
    """
    LLaVA-OneVision with VQToken video compression. Weights, images and text behave as the stock model; videos reach
    the language model as `K + 1` (centroids) or `max(T, K) + 1` (attention) tokens.
    """

    config_class = VQTokenLlavaOnevisionConfig

    def __init__(self, config: VQTokenLlavaOnevisionConfig):
        config.validate_vqtoken_settings()
        # the stock __init__ without its stock inner model (whose post_init would consume the configuration's
        # `gradient_checkpointing` flag before the VQToken inner model exists)
        super(LlavaOnevisionForConditionalGeneration, self).__init__(config)
        self.model = VQTokenLlavaOnevisionModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    @classmethod
    def is_custom_code(cls) -> bool:
        """`False`, as for the inner [`VQTokenLlavaOnevisionModel`]: missing weights start as in a fresh model."""
        return False

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """
        `PreTrainedModel.from_pretrained`, reading this model's own folders and stock LLaVA-OneVision checkpoints
        (Hub layout, `STOCK_ONEVISION_KEY_MAPPING`) alike. A `vqtoken_*` keyword overrides the saved configuration;
        a misspelt one raises `ValueError` with the nearest valid name.
        """
        VQTokenLlavaOnevisionConfig.reject_unknown_settings(kwargs)
        kwargs.setdefault("key_mapping", STOCK_ONEVISION_KEY_MAPPING)
        return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)

    def get_frame_features(self, pixel_values_videos: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.model.get_frame_features(pixel_values_videos, **kwargs)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`; the folder also maps `AutoModel`, `AutoModelForImageTextToText` and
        `AutoModelForMultimodalLM` to this class for `trust_remote_code=True` loading, and declares the
        `video-text-to-text` pipeline (`custom_pipelines` in config.json; its file is copied with the model code, as a
        relative import of this file)."""
        # a relative import of this file: it is what makes transformers copy the pipeline file with the model code
        from .pipeline_vqtoken_llava_onevision import CUSTOM_PIPELINES

        class_path = f"{self.__class__.__module__.split('.')[-1]}.{self.__class__.__name__}"
        auto_map = dict(getattr(self.config, "auto_map", None) or {})
        for auto_class in REMOTE_CODE_AUTO_CLASSES:
            auto_map[auto_class] = class_path
        self.config.auto_map = auto_map
        # `custom_pipelines` describes the saved folder only: the in-memory config is left as it was
        previous = getattr(self.config, "custom_pipelines", None)
        self.config.custom_pipelines = {**(previous or {}), **CUSTOM_PIPELINES}
        try:
            return super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            if previous is None:
                del self.config.custom_pipelines
            else:
                self.config.custom_pipelines = previous

    def align_video_placeholders(self, *args, **kwargs):
        return self.model.align_video_placeholders(*args, **kwargs)

    @torch.no_grad()
    def encode_videos(self, pixel_values_videos: torch.Tensor, **kwargs) -> VQTokenVideoOutput:
        """
        Encodes videos once, for asking them many questions: vision tower, projector and clustering, without the
        language model. Pass the result to `generate(video_outputs=...)`, or store its `codebooks` and `index_maps`
        (the `vqtoken` package writes them to `.vqt` files) and rebuild the tokens later with
        [`~VQTokenLlavaOnevisionModel.video_outputs_from_codebooks`].

        Args:
            pixel_values_videos (`torch.Tensor` of shape `(num_videos, num_frames, channels, height, width)`)
            **kwargs: `vision_feature_layer`, `vision_feature_select_strategy` (default: the configuration's).

        Returns:
            [`VQTokenVideoOutput`] as [`~VQTokenLlavaOnevisionModel.get_video_features`] in mode `"centroids"` or
            `"attention"`.
        """
        if self.config.vqtoken_mode == "off":
            raise ValueError("`encode_videos` needs `vqtoken_mode` 'centroids' or 'attention', not 'off'.")
        frame_features = self.model.get_frame_features(pixel_values_videos.to(self.dtype), **kwargs)
        return self.model.quantize_frame_features(frame_features)

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        video_outputs: VQTokenVideoOutput | None = None,
        **kwargs,
    ):
        """
        `GenerationMixin.generate`, with compressed videos encoded first: every run of video placeholders is
        rewritten to the number of tokens its video produced (each video may get its own K), the batch is re-padded
        on the left, and the encoded videos are passed on as precomputed features. A sample of a batch therefore gets
        the same tokens as when it is generated alone. The output starts with the caller's `input_ids`, as with any
        model, so `output[:, input_ids.shape[1]:]` are the new tokens.

        Args:
            video_outputs ([`VQTokenVideoOutput`], *optional*): videos encoded beforehand (e.g. read from a cache),
                instead of `pixel_values_videos`.
        """
        if input_ids is None and kwargs.get("inputs") is not None:
            input_ids = kwargs.pop("inputs")
        if pixel_values_videos is not None and video_outputs is not None:
            raise ValueError("Pass either `pixel_values_videos` or `video_outputs`, not both.")
        if pixel_values_videos is not None and self.config.vqtoken_mode != "off":
            video_outputs = self.model.get_video_features(
                pixel_values_videos,
                kwargs.get("vision_feature_layer"),
                kwargs.get("vision_feature_select_strategy"),
                return_dict=True,
            )
            pixel_values_videos = None
        if pixel_values_videos is not None:
            kwargs["pixel_values_videos"] = pixel_values_videos
        if video_outputs is None:
            return super().generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

        mm_encoder_outputs = dict(kwargs.pop("mm_encoder_outputs", None) or {})
        mm_encoder_outputs["video"] = video_outputs
        kwargs["mm_encoder_outputs"] = mm_encoder_outputs
        counts = [tokens.shape[0] for tokens in video_outputs.pooler_output]
        if input_ids is None:
            self._check_embedded_video_placeholders(kwargs.get("inputs_embeds"), counts)
            return super().generate(attention_mask=attention_mask, **kwargs)
        aligned_ids, attention_mask, _ = self.model.align_video_placeholders(
            input_ids, attention_mask, counts, pad_token_id=self._pad_token_id(kwargs.get("generation_config"))
        )
        output = super().generate(input_ids=aligned_ids, attention_mask=attention_mask, **kwargs)
        return self._restore_prompt(output, input_ids, aligned_ids.shape[1])

    def _pad_token_id(self, generation_config) -> int:
        pad_token_id = (generation_config or self.generation_config).pad_token_id
        if pad_token_id is None:
            pad_token_id = self.config.text_config.pad_token_id or 0
        if isinstance(pad_token_id, (list, tuple)):
            pad_token_id = pad_token_id[0]
        return int(pad_token_id)

    def _check_embedded_video_placeholders(self, inputs_embeds: torch.Tensor | None, counts: list[int]):
        """`generate(inputs_embeds=...)` cannot rewrite placeholder runs: their count must already be right."""
        if inputs_embeds is None:
            raise ValueError(
                "`generate` with videos needs `input_ids` (or `inputs_embeds`) holding the video placeholders."
            )
        video_token = torch.tensor(self.config.video_token_id, device=inputs_embeds.device)
        placeholder = self.get_input_embeddings()(video_token).to(inputs_embeds.dtype)
        found = int((inputs_embeds == placeholder).all(-1).sum())
        if found != sum(counts):
            raise ValueError(
                f"`inputs_embeds` holds {found} video placeholder embeddings but the videos produced {sum(counts)} "
                f"tokens ({counts} per video). With `inputs_embeds` the placeholder runs cannot be rewritten to each "
                "video's K: pass `input_ids` instead, or use `vqtoken_selection_method='fixed'`."
            )

    @staticmethod
    def _restore_prompt(output, input_ids: torch.LongTensor, aligned_length: int):
        """Puts the caller's prompt back in front of the generated tokens (rows repeated for beams / samples)."""
        sequences = output if isinstance(output, torch.Tensor) else output.sequences
        prompt = input_ids.repeat_interleave(sequences.shape[0] // input_ids.shape[0], dim=0)
        sequences = torch.cat([prompt.to(sequences.device), sequences[:, aligned_length:]], dim=1)
        if isinstance(output, torch.Tensor):
            return sequences
        output.sequences = sequences
        return output


VQTokenLlavaOnevisionForConditionalGeneration.register_for_auto_class("AutoModelForImageTextToText")

__all__ = [
    "VQTokenLlavaOnevisionForConditionalGeneration",
    "VQTokenLlavaOnevisionModel",
    "VQTokenVideoOutput",
]
