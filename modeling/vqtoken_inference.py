# Copyright 2026 The VQToken for Transformers authors. Licensed under the Apache License, Version 2.0.
"""
Ask questions about videos with a VQToken model, stage by stage, with the time of each stage.

The stages follow the data path of a video: decode (PyAV) -> preprocess (processor) -> vision (tower + projector) ->
clustering (K-means, VQ-Attention) -> prefill (time to the first generated token) -> generation (the other tokens).

This file ships with the model code (`trust_remote_code`): the `video-text-to-text` pipeline runs on it, and the
`vqtoken` package re-exports it as `vqtoken.inference`. Relative imports only.
"""

import time
from dataclasses import asdict, dataclass, field

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from .video_io import DEFAULT_NUM_FRAMES, DecodedVideo, load_video


@dataclass
class VideoAnswer:
    """
    The answer to one question about one video, with what it cost.

    Attributes:
        answer: the generated text.
        num_frames: frames sampled from the video.
        visual_tokens_stock: tokens stock LLaVA-OneVision would feed for this video (`T * 196 + 1` at 384 px).
        visual_tokens_clustered: tokens the clustering saw (`T * 729` at 384 px without pooling).
        visual_tokens: tokens the language model actually read for the video, newline included.
        num_clusters: `K` chosen for the video (`None` in mode `"off"`).
        timings: seconds per stage; stages shared by a batch are reported for the whole batch.
    """

    answer: str
    num_frames: int
    visual_tokens_stock: int
    visual_tokens_clustered: int
    visual_tokens: int
    num_clusters: int | None
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class _GenerationClock(LogitsProcessor):
    """
    Counts the decoding steps of `generate` and records when the first one's logits are ready (the end of prefill).
    It changes no score.
    """

    def __init__(self):
        self.steps = 0
        self.first_token_time = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.steps == 0:
            _synchronize(scores.device)
            self.first_token_time = time.perf_counter()
        self.steps += 1
        return scores


def _synchronize(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def video_prompt(processor, question: str) -> str:
    """The chat prompt of one question about one video, with the generation prompt appended."""
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True)


def decode_videos(videos: list, num_frames: int = DEFAULT_NUM_FRAMES) -> list[DecodedVideo]:
    """
    Samples `num_frames` frames from each video: paths, file objects, frame arrays `(T, H, W, 3)` (or lists of frames)
    are decoded with [`load_video`]; [`DecodedVideo`]s are kept as they are.
    """
    return [video if isinstance(video, DecodedVideo) else load_video(video, num_frames=num_frames) for video in videos]


def encoded_video(video):
    """
    `video` if it is already encoded, i.e. has a `codebook` `(K, hidden_size)` and an `index_map` `(T, P)` (a `.vqt`
    file read back by the `vqtoken` package, a stream's snapshot); the snapshot of an object with a `snapshot()` method
    (a `vqtoken.streaming.VideoStream`); `None` for anything else.
    """
    if hasattr(video, "snapshot"):
        video = video.snapshot()
    return video if hasattr(video, "codebook") and hasattr(video, "index_map") else None


@torch.no_grad()
def answer_prompts(
    model,
    processor,
    prompts: list[str],
    videos: list[DecodedVideo],
    max_new_tokens: int = 64,
    timings: dict[str, float] | None = None,
    **generate_kwargs,
) -> list["VideoAnswer"]:
    """
    Generates the continuation of `prompts[i]`, a chat prompt holding one video placeholder, about `videos[i]`, for
    every `i`, in one batch: preprocess -> vision -> clustering -> generate, each stage timed.

    Args:
        model: a [`VQTokenLlavaOnevisionForConditionalGeneration`] in eval mode.
        processor: its [`VQTokenLlavaOnevisionProcessor`].
        prompts: one prompt string per video, e.g. from [`video_prompt`] or `processor.apply_chat_template`.
        videos: decoded videos (see [`decode_videos`]), all with the same number of frames.
        max_new_tokens, **generate_kwargs: passed to `generate` (greedy unless told otherwise).
        timings: stage times already measured (e.g. `{"decode": ...}`); the stages of this call are added after them.

    Returns:
        one [`VideoAnswer`] per video.
    """
    if len(videos) != len(prompts):
        raise ValueError(f"Got {len(videos)} videos but {len(prompts)} prompts: give one prompt per video.")
    if not videos:
        raise ValueError("No video given.")
    device = model.device
    timings = dict(timings or {})

    start = time.perf_counter()
    frame_counts = {len(video.frames) for video in videos}
    if len(frame_counts) > 1:
        raise ValueError(f"The videos of one batch must have the same number of frames, got {sorted(frame_counts)}.")
    inputs = processor(
        text=list(prompts),
        videos=[video.frames for video in videos],
        return_tensors="pt",
        padding=True,
        padding_side="left",
    ).to(device)
    pixel_values_videos = inputs.pop("pixel_values_videos").to(model.dtype)
    timings["preprocess"] = time.perf_counter() - start

    config = model.config
    start = time.perf_counter()
    frame_features = model.model.get_frame_features(pixel_values_videos)
    _synchronize(device)
    timings["vision"] = time.perf_counter() - start

    start = time.perf_counter()
    if config.vqtoken_mode == "off":
        video_token_counts = [int(row.sum()) for row in inputs["input_ids"] == config.video_token_id]
        num_clusters = [None] * len(videos)
        generate_inputs = {"pixel_values_videos": pixel_values_videos}
    else:
        video_outputs = model.model.quantize_frame_features(frame_features)
        video_token_counts = [tokens.shape[0] for tokens in video_outputs.pooler_output]
        num_clusters = [int(k) for k in video_outputs.num_clusters]
        generate_inputs = {"video_outputs": video_outputs}
    _synchronize(device)
    timings["clustering"] = time.perf_counter() - start

    answers = timed_generate(model, processor, {**inputs, **generate_inputs}, timings, max_new_tokens, **generate_kwargs)
    return [
        VideoAnswer(
            answer=answer,
            num_frames=len(video.frames),
            visual_tokens_stock=stock_video_tokens(config, len(video.frames)),
            visual_tokens_clustered=len(video.frames) * frame_features.shape[2],
            visual_tokens=count,
            num_clusters=k,
            timings=dict(timings),
        )
        for answer, video, count, k in zip(answers, videos, video_token_counts, num_clusters)
    ]


@torch.no_grad()
def answer_prompts_from_codebooks(
    model,
    processor,
    prompts: list[str],
    codebooks: list[torch.Tensor],
    index_maps: list[torch.LongTensor],
    max_new_tokens: int = 64,
    timings: dict[str, float] | None = None,
    **generate_kwargs,
) -> list["VideoAnswer"]:
    """
    Like [`answer_prompts`] for videos already quantized (e.g. read from `.vqt` files): no decoding, vision tower or
    clustering. Stages: `tokens` (the codebook, or VQ-Attention over it), `preprocess` (tokenise the prompts; one
    `<video>` per prompt is enough, `generate` stretches it), `prefill`, `generation`.

    Args:
        prompts: one prompt string per video, holding its video placeholder.
        codebooks (`list[torch.Tensor]`, one per video, of shape `(num_clusters_i, hidden_size)`)
        index_maps (`list[torch.LongTensor]`, one per video, of shape `(num_frames_i, tokens_per_frame)`)
    """
    if not (len(prompts) == len(codebooks) == len(index_maps)):
        raise ValueError(f"Got {len(prompts)} prompts for {len(codebooks)} codebooks and {len(index_maps)} index maps.")
    if not prompts:
        raise ValueError("No video given.")
    timings = dict(timings or {})
    start = time.perf_counter()
    video_outputs = model.model.video_outputs_from_codebooks(codebooks, index_maps)
    _synchronize(model.device)
    timings["tokens"] = time.perf_counter() - start

    start = time.perf_counter()
    inputs = processor.tokenizer(list(prompts), return_tensors="pt", padding=True, padding_side="left").to(model.device)
    timings["preprocess"] = time.perf_counter() - start

    answers = timed_generate(
        model, processor, {**inputs, "video_outputs": video_outputs}, timings, max_new_tokens, **generate_kwargs
    )
    return [
        VideoAnswer(
            answer=answer,
            num_frames=index_map.shape[0],
            visual_tokens_stock=stock_video_tokens(model.config, index_map.shape[0]),
            visual_tokens_clustered=index_map.numel(),
            visual_tokens=tokens.shape[0],
            num_clusters=codebook.shape[0],
            timings=dict(timings),
        )
        for answer, codebook, index_map, tokens in zip(answers, codebooks, index_maps, video_outputs.pooler_output)
    ]


def timed_generate(
    model, processor, inputs: dict, timings: dict[str, float], max_new_tokens: int = 64, **generate_kwargs
) -> list[str]:
    """
    Runs `model.generate(**inputs)` (greedy unless told otherwise) and adds its `prefill` (up to the first token's
    logits) and `generation` (the other tokens) times to `timings`.

    Returns:
        the decoded continuation of every row, stripped.
    """
    clock = _GenerationClock()
    settings = {"max_new_tokens": max_new_tokens, "do_sample": False, **generate_kwargs}
    settings["logits_processor"] = LogitsProcessorList([*(settings.get("logits_processor") or []), clock])
    start = time.perf_counter()
    output_ids = model.generate(**inputs, **settings)
    _synchronize(model.device)
    end = time.perf_counter()
    first_token = clock.first_token_time if clock.first_token_time is not None else end
    timings["prefill"] = first_token - start
    timings["generation"] = end - first_token
    # generate returns the re-aligned prompt followed by one column per decoding step
    answers = processor.batch_decode(output_ids[:, output_ids.shape[1] - clock.steps :], skip_special_tokens=True)
    return [answer.strip() for answer in answers]


def stock_video_tokens(config, num_frames: int) -> int:
    """Tokens stock LLaVA-OneVision feeds for a video of `num_frames` frames: 2x2-pooled patch grids + the newline."""
    grid = config.vision_config.image_size // config.vision_config.patch_size
    return num_frames * (-(-grid // 2)) ** 2 + 1


def ask_videos(
    model,
    processor,
    videos: list,
    questions: list[str],
    num_frames: int = DEFAULT_NUM_FRAMES,
    max_new_tokens: int = 64,
    **generate_kwargs,
) -> list[VideoAnswer]:
    """
    Answers `questions[i]` about `videos[i]` for every `i`, in one batch.

    Args:
        model: a [`VQTokenLlavaOnevisionForConditionalGeneration`] in eval mode.
        processor: its [`VQTokenLlavaOnevisionProcessor`].
        videos: paths, file objects, frame arrays `(T, H, W, 3)` or [`DecodedVideo`]s. All are sampled to
            `num_frames` frames (the processor needs one frame count per batch). Or videos already encoded (see
            [`encoded_video`]: `.vqt` files read back, `vqtoken.streaming.VideoStream`s), answered from their codebook
            and index map.
        questions: one question per video.
        num_frames: frames sampled uniformly over each whole clip.
        max_new_tokens, **generate_kwargs: passed to `generate` (greedy unless told otherwise).

    Returns:
        one [`VideoAnswer`] per video.
    """
    if len(videos) != len(questions):
        raise ValueError(f"Got {len(videos)} videos but {len(questions)} questions: give one question per video.")
    if not videos:
        raise ValueError("No video given.")
    prompts = [video_prompt(processor, question) for question in questions]
    encoded = [encoded_video(video) for video in videos]
    if any(video is not None for video in encoded):
        if not all(video is not None for video in encoded):
            raise ValueError("A batch mixes encoded videos (read from .vqt files, streams) and videos: give one kind.")
        return answer_prompts_from_codebooks(
            model,
            processor,
            prompts,
            [video.codebook for video in encoded],
            [video.index_map for video in encoded],
            max_new_tokens,
            **generate_kwargs,
        )
    start = time.perf_counter()
    decoded = decode_videos(videos, num_frames)
    timings = {"decode": time.perf_counter() - start}
    return answer_prompts(model, processor, prompts, decoded, max_new_tokens, timings=timings, **generate_kwargs)


def ask_video(model, processor, video, question: str, **kwargs) -> VideoAnswer:
    """Answers one question about one video; see [`ask_videos`]."""
    return ask_videos(model, processor, [video], [question], **kwargs)[0]


__all__ = [
    "VideoAnswer",
    "answer_prompts",
    "answer_prompts_from_codebooks",
    "ask_video",
    "ask_videos",
    "decode_videos",
    "encoded_video",
    "stock_video_tokens",
    "timed_generate",
    "video_prompt",
]
