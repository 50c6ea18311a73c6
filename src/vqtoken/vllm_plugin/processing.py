"""
vLLM's multimodal processing for VQToken: how many placeholder tokens each video gets, and what reaches the model.

vLLM writes a video's placeholders into the prompt before the encoder runs, and the encoder must then produce exactly
that many rows. The count is therefore a function of what the request holds:

- frames: `K + 1` (centroids), `max(T, K) + 1` (attention) with `K = vqtoken_max_clusters`, which only a fixed
  selection method guarantees; stock OneVision's count in mode `"off"`;
- a `.vqt` file: the same formulas with the file's own `K` and `T` (any selection method);
- a `(num_tokens, hidden_size)` embeddings tensor: its length.

A `.vqt` is read and checked here, in the process that receives the request (vLLM's front end), so that a file made
by another model or with other settings is refused with [`~vqtoken.cache.CacheMismatchError`]'s message before it
reaches the engine; the server keeps running. The check needs the fingerprint of the served vision tower and
projector, which is computed from the folder's weight files, in the dtype vLLM runs the model in.
"""

import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from vllm.model_executor.models.llava_onevision import (
    LlavaOnevisionMultiModalProcessor,
    LlavaOnevisionProcessingInfo,
)
from vllm.multimodal.inputs import MultiModalFieldConfig
from vllm.multimodal.parse import (
    DictEmbeddingItems,
    MultiModalDataParser,
    VideoEmbeddingItems,
    VideoProcessorItems,
)
from vllm.multimodal.processing import PromptReplacement

from ..cache import CachedVideo, CacheError, check_cached_video, fingerprint_tensors, parse_cached_video
from ..modeling.configuration_vqtoken_llava_onevision import VQTokenLlavaOnevisionConfig
from ..modeling.processing_vqtoken_llava_onevision import quantized_video_tokens
from ..modeling.video_io import DEFAULT_NUM_FRAMES
from .vqt_inputs import VQT_FIELD


CODEBOOK_FIELD = "vqtoken_codebook"
INDEX_MAP_FIELD = "vqtoken_index_map"
FINGERPRINTED_PREFIXES = ("model.vision_tower.", "model.multi_modal_projector.")
"""Weights of a VQToken folder that determine a video's codebook (see `vqtoken.cache.model_fingerprint`)."""

ADAPTIVE_K_MESSAGE = (
    "This model chooses K for each video after clustering it (vqtoken_selection_method={method!r}), but vLLM fixes "
    "the number of a video's placeholder tokens before its encoder runs, so frames cannot be encoded inside vLLM "
    "with it. Either send videos encoded beforehand: `vqtoken encode` writes .vqt files, which carry their own K "
    "(serve with --enable-mm-embeds --limit-mm-per-prompt '{{\"video\": 0}}' and send them as `video_embeds`, see "
    "vqtoken.vllm_plugin.vqt_inputs); or encode frames in vLLM with the fixed K = vqtoken_max_clusters: "
    '--hf-overrides \'{{"vqtoken_selection_method": "fixed"}}\'.'
)


def video_token_count(config: VQTokenLlavaOnevisionConfig, num_frames: int, num_clusters: int) -> int:
    """[`quantized_video_tokens`] in the configured mode."""
    return quantized_video_tokens(config.vqtoken_mode, num_frames, num_clusters)


@functools.lru_cache(maxsize=4)
def served_model_fingerprint(folder: str, dtype: torch.dtype) -> str:
    """
    `vqtoken.cache.model_fingerprint` of the model in `folder` once loaded in `dtype`, computed from its safetensors
    files (the vision tower and projector weights, named as the Transformers model names them).
    """
    tensors = []
    for path in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as weights:
            for key in weights.keys():
                if key.startswith(FINGERPRINTED_PREFIXES):
                    tensors.append((key.removeprefix("model."), weights.get_tensor(key).to(dtype)))
    if not tensors:
        raise ValueError(f"{folder} holds no vision tower or projector weights (model.vision_tower.*) to fingerprint.")
    return fingerprint_tensors(tensors)


@functools.lru_cache(maxsize=4)
def _model_folder(model: str, revision: str | None) -> str:
    """The served model's local folder: `model` itself, or its Hub snapshot (resolved once, not per request)."""
    if Path(model).is_dir():
        return model
    from huggingface_hub import snapshot_download

    return snapshot_download(model, revision=revision, allow_patterns=["*.safetensors", "*.json"])


class CachedVideoItems(DictEmbeddingItems):
    """The `.vqt` videos of a request, read and checked: their codebooks and index maps go to the model as they are."""

    def __init__(self, videos: list[CachedVideo], num_tokens: list[int]):
        super().__init__(
            {
                CODEBOOK_FIELD: [video.codebook for video in videos],
                INDEX_MAP_FIELD: [video.index_map for video in videos],
            },
            modality="video",
            required_fields={CODEBOOK_FIELD, INDEX_MAP_FIELD},
            fields_factory=lambda data: cached_video_fields(),
        )
        self.num_tokens = num_tokens

    def get_feature_size(self, item_idx: int) -> int:
        return self.num_tokens[item_idx]


def cached_video_fields() -> dict[str, MultiModalFieldConfig]:
    """Codebooks and index maps go to the model one per video."""
    return {field: MultiModalFieldConfig.batched("video") for field in (CODEBOOK_FIELD, INDEX_MAP_FIELD)}


def _vqt_blobs(value) -> list[torch.Tensor]:
    """The files of a `{"vqt": ...}` entry: one 1-D uint8 tensor, a list of them, or a 2-D tensor (one file a row,
    as vLLM's chat front end stacks files of equal size)."""
    if isinstance(value, torch.Tensor):
        blobs = [value] if value.ndim == 1 else list(value)
    elif isinstance(value, (list, tuple)):
        blobs = list(value)
    else:
        blobs = [value]
    for index, blob in enumerate(blobs):
        if not isinstance(blob, torch.Tensor) or blob.dtype != torch.uint8 or blob.ndim != 1:
            got = (blob.dtype, tuple(blob.shape)) if isinstance(blob, torch.Tensor) else type(blob).__name__
            raise ValueError(
                f"video {index}: a .vqt file is sent as a 1-D uint8 tensor of its bytes "
                f"(vqtoken.vllm_plugin.vqt_inputs), got {got}."
            )
    return blobs


class VQTokenDataParser(MultiModalDataParser):
    """vLLM's parser, plus videos given as `.vqt` files (`{"vqt": ...}`), read and checked by `read_video`."""

    def __init__(self, read_video: Callable[[bytes, int], tuple[CachedVideo, int]], **kwargs):
        super().__init__(**kwargs)
        self.read_video = read_video

    def _parse_video_data(self, data):
        if isinstance(data, Mapping) and VQT_FIELD in data:
            unexpected = sorted(set(data) - {VQT_FIELD})
            if unexpected:
                raise ValueError(f"A .vqt video entry holds only {VQT_FIELD!r}, got also {unexpected}.")
            blobs = _vqt_blobs(data[VQT_FIELD])
            read = [self.read_video(blob.numpy().tobytes(), index) for index, blob in enumerate(blobs)]
            return CachedVideoItems([video for video, _ in read], [count for _, count in read])
        return super()._parse_video_data(data)


class VQTokenProcessingInfo(LlavaOnevisionProcessingInfo):
    """LLaVA-OneVision's processing info with VQToken's placeholder counts and `.vqt` inputs."""

    def get_hf_config(self) -> VQTokenLlavaOnevisionConfig:
        return self.ctx.get_hf_config(VQTokenLlavaOnevisionConfig)

    def get_data_parser(self) -> MultiModalDataParser:
        return VQTokenDataParser(
            self.read_cached_video,
            expected_hidden_size=self._get_expected_hidden_size(),
            allow_missing_mm_embeddings=self.allow_missing_mm_embeddings,
        )

    def read_cached_video(self, data: bytes, index: int) -> tuple[CachedVideo, int]:
        """Reads the `.vqt` bytes of the request's video `index` and checks that they fit the served model.

        Returns:
            the video and the number of tokens it gives.

        Raises:
            ValueError: naming the video and what is wrong (not a `.vqt`, made by another model, other settings, or
                a server in mode `"off"`).
        """
        config = self.get_hf_config()
        if config.vqtoken_mode == "off":
            raise ValueError(
                f"video {index}: this server runs vqtoken_mode='off' (stock OneVision), which does not read .vqt "
                "files; serve the folder with vqtoken_mode 'centroids' or 'attention'."
            )
        model_config = self.ctx.model_config
        try:
            cached = parse_cached_video(data)
            fingerprint = served_model_fingerprint(
                _model_folder(model_config.model, model_config.revision), model_config.dtype
            )
            check_cached_video(cached, config, fingerprint, self.get_hf_processor())
        except CacheError as error:
            raise ValueError(f"video {index}: {error}") from error
        return cached, video_token_count(config, cached.num_frames, cached.num_clusters)

    def get_num_video_tokens(self, *, image_width: int, image_height: int, num_frames: int) -> int:
        config = self.get_hf_config()
        if config.vqtoken_mode == "off":
            return super().get_num_video_tokens(
                image_width=image_width, image_height=image_height, num_frames=num_frames
            )
        # a fixed K: the model refuses to start with an adaptive one while frames are allowed (ADAPTIVE_K_MESSAGE)
        return video_token_count(config, num_frames, config.vqtoken_max_clusters)

    def get_mm_max_tokens_per_item(self, seq_len: int, mm_counts: Mapping[str, int]) -> Mapping[str, int] | None:
        """The most tokens one item can take, which vLLM sizes its encoder cache with: in mode `"off"` measured by
        stock on dummy inputs; else, for a video, the count of a `DEFAULT_NUM_FRAMES`-frame video at
        `vqtoken_max_clusters` (also what a `.vqt` of as many frames gives at most), without encoding a dummy video
        (impossible with an adaptive K)."""
        config = self.get_hf_config()
        if config.vqtoken_mode == "off":
            return None
        num_frames = self.get_num_frames_with_most_features(seq_len, mm_counts)
        max_tokens = {
            "video": video_token_count(config, num_frames, config.vqtoken_max_clusters),
            "image": self.get_max_image_tokens(),
        }
        return {modality: max_tokens[modality] for modality in mm_counts}

    def get_num_frames_with_most_features(self, seq_len: int, mm_counts: Mapping[str, int]) -> int:
        """Frames of the dummy videos vLLM profiles memory with: stock's choice in mode `"off"`, else the default
        frame count, fewer if `max(T, K) + 1` tokens per video would not fit `seq_len` (attention mode). (Stock's
        search for the largest count that fits never ends when the count does not grow with the frames.)"""
        config = self.get_hf_config()
        if config.vqtoken_mode == "off":
            return super().get_num_frames_with_most_features(seq_len, mm_counts)
        if config.vqtoken_mode == "centroids":
            return DEFAULT_NUM_FRAMES
        tokens_per_video = seq_len // max(mm_counts.get("video", 0), 1)
        return max(1, min(DEFAULT_NUM_FRAMES, tokens_per_video - 1))


class VQTokenMultiModalProcessor(LlavaOnevisionMultiModalProcessor):
    """LLaVA-OneVision's processor whose videos get VQToken's placeholder counts; `.vqt` files and embeddings pass
    through to the model."""

    def _get_mm_fields_config(self, hf_inputs, hf_processor_mm_kwargs) -> Mapping[str, MultiModalFieldConfig]:
        return {
            **super()._get_mm_fields_config(hf_inputs, hf_processor_mm_kwargs),
            "video_embeds": MultiModalFieldConfig.batched("video"),
            **cached_video_fields(),
            # the raw files, as the chat front end merges the `video_embeds` parts of a request before parsing them
            VQT_FIELD: MultiModalFieldConfig.batched("video"),
        }

    def _get_prompt_updates(self, mm_items, hf_processor_mm_kwargs, out_mm_kwargs) -> Sequence[PromptReplacement]:
        image_updates = [
            update
            for update in super()._get_prompt_updates(mm_items, hf_processor_mm_kwargs, out_mm_kwargs)
            if update.modality != "video"
        ]
        video_token_id = self.info.get_hf_config().video_token_index

        def video_replacement(item_idx: int) -> list[int]:
            videos = mm_items.get_items("video", (CachedVideoItems, VideoEmbeddingItems, VideoProcessorItems))
            if isinstance(videos, (CachedVideoItems, VideoEmbeddingItems)):
                count = videos.get_feature_size(item_idx)
            else:
                frame_size = videos.get_frame_size(item_idx)
                count = self.info.get_num_video_tokens(
                    image_width=frame_size.width,
                    image_height=frame_size.height,
                    num_frames=videos.get_num_frames(item_idx),
                )
            return [video_token_id] * count

        video_update = PromptReplacement(modality="video", target=[video_token_id], replacement=video_replacement)
        return [*image_updates, video_update]


__all__ = [
    "CachedVideoItems",
    "VQTokenDataParser",
    "VQTokenMultiModalProcessor",
    "VQTokenProcessingInfo",
    "served_model_fingerprint",
    "video_token_count",
]
