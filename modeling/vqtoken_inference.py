# Copyright 2026 The VQToken for Transformers authors. Licensed under the Apache License, Version 2.0.
"""
Ask questions about videos with a VQToken model, stage by stage, with the time of each stage.

The stages follow the data path of a video: decode (PyAV) -> preprocess (processor) -> vision (tower + projector) ->
clustering (K-means, VQ-Attention) -> prefill (time to the first generated token) -> generation (the other tokens).

This file ships with the model code (`trust_remote_code`): the `video-text-to-text` pipeline runs on it, and the
`vqtoken` package re-exports it as `vqtoken.inference`. Relative imports only.
"""

import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field

import torch
from transformers import LogitsProcessor, LogitsProcessorList
from transformers.modeling_outputs import BaseModelOutputWithPooling

from .video_io import DEFAULT_NUM_FRAMES, FRAME_LAYOUT, DecodedVideo, decode_concurrently, load_video
from .vqtoken_video_cache import is_cached_video, load_cached_video


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


def synchronize(device: torch.device | str):
    """Waits for the work queued on `device` (a no-op off CUDA), so that a clock reads when it has really run."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


class StageTimer:
    """
    Seconds per stage of a request, in order. Each stage ends with [`synchronize`]: asynchronous GPU work is counted in
    the stage that queued it.
    """

    def __init__(self, device: torch.device | str, timings: dict[str, float] | None = None):
        self.device = device
        self.timings = dict(timings or {})

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        yield
        synchronize(self.device)
        self.timings[name] = time.perf_counter() - start


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
            synchronize(scores.device)
            self.first_token_time = time.perf_counter()
        self.steps += 1
        return scores


@dataclass
class EncodedVideos:
    """
    Videos encoded for `generate(video_outputs=...)` or `forward(mm_encoder_outputs={"video": ...})`.

    Attributes:
        video_outputs: the encoder output; `pooler_output` holds the tokens each video gives the language model.
        visual_tokens: tokens the language model reads per video, newline included.
        num_clusters: `K` per video (`None` when nothing was clustered).
    """

    video_outputs: object
    visual_tokens: list[int]
    num_clusters: list[int | None]


VIDEO_TOKENS = ("model", "full")


def encode_for_generation(
    model, pixel_values_videos: torch.Tensor, timer: StageTimer | None = None, video_tokens: str = "model"
) -> EncodedVideos:
    """
    The one path from pixels to the tokens the language model reads, in two timed stages: `vision` (tower and
    projector) and `clustering` (K-means and VQ-Attention).

    Args:
        model: a [`VQTokenLlavaOnevisionForConditionalGeneration`].
        pixel_values_videos (`torch.Tensor` of shape `(num_videos, num_frames, channels, height, width)`)
        timer: records the stages (nothing is timed, and the device is not synchronised, without one).
        video_tokens: `"model"`, what the configured `vqtoken_mode` gives (in mode `"off"`, the stock 2x2-pooled
            tokens); `"full"`, every projected token of every frame and the newline, uncompressed (a baseline).
    """
    if video_tokens not in VIDEO_TOKENS:
        raise ValueError(f"`video_tokens` must be one of {VIDEO_TOKENS}, got {video_tokens!r}.")
    stage = timer.stage if timer is not None else (lambda name: nullcontext())
    inner = model.model
    if video_tokens == "model" and model.config.vqtoken_mode == "off":
        with stage("vision"):
            video_outputs = inner.get_video_features(pixel_values_videos, return_dict=True)
        with stage("clustering"):
            pass
        counts = [int(video_outputs.pooler_output.shape[1])] * pixel_values_videos.shape[0]
        return EncodedVideos(video_outputs, counts, [None] * len(counts))
    with stage("vision"):
        frame_features = inner.get_frame_features(pixel_values_videos)
    with stage("clustering"):
        if video_tokens == "full":
            newline = inner.image_newline[None, :]
            tokens = [torch.cat([video.flatten(0, 1), newline.to(video.dtype)], dim=0) for video in frame_features]
            video_outputs = BaseModelOutputWithPooling(pooler_output=tokens)
        else:
            video_outputs = inner.quantize_frame_features(frame_features)
    counts = [tokens.shape[0] for tokens in video_outputs.pooler_output]
    clusters = [int(k) for k in video_outputs.num_clusters] if video_tokens == "model" else [None] * len(counts)
    return EncodedVideos(video_outputs, counts, clusters)


def video_pixels(model, processor, frames) -> torch.Tensor:
    """
    The video processor's pixels of one video, on the model's device and in its dtype.

    Args:
        frames: `uint8` array `(num_frames, height, width, 3)`, RGB.

    Returns:
        `torch.Tensor` of shape `(1, num_frames, channels, image_size, image_size)`.
    """
    pixels = processor.video_processor(videos=[frames], return_tensors="pt", input_data_format=FRAME_LAYOUT)
    return pixels["pixel_values_videos"].to(model.device, model.dtype)


def model_inputs(model, processor, texts: list[str], images: list | None = None, videos: list | None = None):
    """
    The processor's tensors for `texts` (left-padded) and their images and videos (frame arrays `(T, H, W, 3)`), on
    the model's device, pixel values in the model's dtype.
    """
    layout = {"input_data_format": FRAME_LAYOUT} if videos else {}  # frames 1 to 3 pixels high would read as (3, H, W)
    inputs = processor(
        text=list(texts),
        images=images or None,
        videos=videos or None,
        return_tensors="pt",
        padding=True,
        padding_side="left",
        **layout,
    ).to(model.device)
    for key in ("pixel_values", "pixel_values_videos"):
        if key in inputs:
            inputs[key] = inputs[key].to(model.dtype)
    return inputs


def video_prompt(processor, question: str) -> str:
    """The chat prompt of one question about one video, with the generation prompt appended."""
    if not isinstance(question, str):
        raise TypeError(f"A question must be a string, got {type(question).__name__}: {question!r}.")
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True)


def decode_videos(videos: list, num_frames: int = DEFAULT_NUM_FRAMES) -> list[DecodedVideo]:
    """
    Samples `num_frames` frames from each video: paths, file objects, frame arrays `(T, H, W, 3)` (or lists of frames)
    are decoded with [`load_video`], several at once (see [`decode_concurrently`]); [`DecodedVideo`]s are kept as they
    are.
    """

    def decode(video) -> DecodedVideo:
        return video if isinstance(video, DecodedVideo) else load_video(video, num_frames=num_frames)

    return decode_concurrently(decode, videos)


def encoded_video(video):
    """
    `video` if it is already encoded, i.e. has a `codebook` `(K, hidden_size)` and an `index_map` `(T, P)` (a `.vqt`
    file read back by the `vqtoken` package, a stream's snapshot); the snapshot of an object with a `snapshot()` method
    (a `vqtoken.streaming.VideoStream`); `None` for anything else.
    """
    if hasattr(video, "snapshot"):
        video = video.snapshot()
    return video if hasattr(video, "codebook") and hasattr(video, "index_map") else None


def encoded_batch(model, processor, videos: list) -> tuple[list, dict[str, float]] | None:
    """
    The videos of a batch when they are already encoded: `.vqt` paths, read and checked against `model` and
    `processor` (the seconds that takes are `timings["load"]`), or objects with a codebook and an index map (see
    [`encoded_video`]). `None` when no video of the batch is encoded.

    Returns:
        `(encoded videos, timings)`, or `None`.

    Raises:
        ValueError: the batch mixes encoded videos and videos to decode.
    """
    cached = [is_cached_video(video) for video in videos]
    objects = [None if is_cached else encoded_video(video) for video, is_cached in zip(videos, cached)]
    is_encoded = [is_cached or video is not None for is_cached, video in zip(cached, objects)]
    if not any(is_encoded):
        return None
    if not all(is_encoded):
        raise ValueError(
            "A batch mixes .vqt files and videos, or encoded videos (streams, .vqt files read back) and videos: "
            "give one kind."
        )
    start = time.perf_counter()
    encoded = [
        load_cached_video(video, model, processor) if is_cached else video_object
        for video, is_cached, video_object in zip(videos, cached, objects)
    ]
    return encoded, ({"load": time.perf_counter() - start} if any(cached) else {})


@torch.no_grad()
def answer_prompts(
    model,
    processor,
    prompts: list[str],
    videos: list[DecodedVideo],
    max_new_tokens: int = 64,
    timings: dict[str, float] | None = None,
    video_tokens: str = "model",
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
        video_tokens: `"model"` or `"full"` (see [`encode_for_generation`]).

    Returns:
        one [`VideoAnswer`] per video.
    """
    if len(videos) != len(prompts):
        raise ValueError(f"Got {len(videos)} videos but {len(prompts)} prompts: give one prompt per video.")
    if not videos:
        raise ValueError("No video given.")
    timer = StageTimer(model.device, timings)
    frame_counts = {len(video.frames) for video in videos}
    if len(frame_counts) > 1:
        raise ValueError(f"The videos of one batch must have the same number of frames, got {sorted(frame_counts)}.")
    with timer.stage("preprocess"):
        inputs = model_inputs(model, processor, prompts, videos=[video.frames for video in videos])
        pixel_values_videos = inputs.pop("pixel_values_videos")
    encoded = encode_for_generation(model, pixel_values_videos, timer, video_tokens)
    answers = timed_generate(
        model,
        processor,
        {**inputs, "video_outputs": encoded.video_outputs},
        timer.timings,
        max_new_tokens,
        **generate_kwargs,
    )
    config = model.config
    return [
        VideoAnswer(
            answer=answer,
            num_frames=len(video.frames),
            visual_tokens_stock=stock_video_tokens(config, len(video.frames)),
            visual_tokens_clustered=len(video.frames) * config.vqtoken_tokens_per_frame,
            visual_tokens=count,
            num_clusters=k,
            timings=dict(timer.timings),
        )
        for answer, video, count, k in zip(answers, videos, encoded.visual_tokens, encoded.num_clusters)
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
        raise ValueError(
            f"Got {len(prompts)} prompts for {len(codebooks)} codebooks and {len(index_maps)} index maps."
        )
    if not prompts:
        raise ValueError("No video given.")
    timer = StageTimer(model.device, timings)
    with timer.stage("tokens"):
        video_outputs = model.model.video_outputs_from_codebooks(codebooks, index_maps)
    with timer.stage("preprocess"):
        inputs = processor.tokenizer(list(prompts), return_tensors="pt", padding=True, padding_side="left")
        inputs = inputs.to(model.device)
    answers = timed_generate(
        model, processor, {**inputs, "video_outputs": video_outputs}, timer.timings, max_new_tokens, **generate_kwargs
    )
    timings = timer.timings
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
    check_context(model, inputs, max_new_tokens)
    clock = _GenerationClock()
    settings = {"max_new_tokens": max_new_tokens, "do_sample": False, **generate_kwargs}
    settings["logits_processor"] = LogitsProcessorList([*(settings.get("logits_processor") or []), clock])
    start = time.perf_counter()
    output_ids = model.generate(**inputs, **settings)
    synchronize(model.device)
    end = time.perf_counter()
    first_token = clock.first_token_time if clock.first_token_time is not None else end
    timings["prefill"] = first_token - start
    timings["generation"] = end - first_token
    # generate returns the caller's prompt followed by the new tokens
    answers = processor.batch_decode(output_ids[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    return [answer.strip() for answer in answers]


def check_context(model, inputs: dict, max_new_tokens: int):
    """
    Refuses prompts that, with their video tokens and `max_new_tokens`, would run past the language model's context
    (`max_position_embeddings`): beyond it the model's positions are untrained and its answer meaningless.
    """
    attention_mask = inputs.get("attention_mask")
    if attention_mask is None:
        attention_mask = torch.ones_like(inputs["input_ids"])
    video_outputs = inputs.get("video_outputs")
    if video_outputs is not None:
        counts = [tokens.shape[0] for tokens in video_outputs.pooler_output]
        _, attention_mask, _ = model.align_video_placeholders(inputs["input_ids"], attention_mask, counts)
    context = model.config.text_config.max_position_embeddings
    for row, length in enumerate(attention_mask.sum(dim=1).tolist()):
        if length + max_new_tokens > context:
            raise ValueError(
                f"Prompt {row} holds {length} tokens (video tokens included) and up to {max_new_tokens} new tokens "
                f"are asked for: {length + max_new_tokens} in all, more than the model's context of {context} tokens. "
                "Sample fewer frames, shorten the question or lower max_new_tokens."
            )


def stock_video_tokens(config, num_frames: int) -> int:
    """Tokens stock LLaVA-OneVision feeds for a video of `num_frames` frames: 2x2-pooled patch grids + the newline."""
    grid = config.vision_config.image_size // config.vision_config.patch_size
    return num_frames * (-(-grid // 2)) ** 2 + 1


def ask_videos(
    model,
    processor,
    videos: list,
    questions: list[str],
    num_frames: int | None = None,
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
        num_frames: frames sampled uniformly over each whole clip (default: the number the model expects,
            `processor.default_num_frames`).
        max_new_tokens, **generate_kwargs: passed to `generate` (greedy unless told otherwise).

    Returns:
        one [`VideoAnswer`] per video.
    """
    if len(videos) != len(questions):
        raise ValueError(f"Got {len(videos)} videos but {len(questions)} questions: give one question per video.")
    if not videos:
        raise ValueError("No video given.")
    prompts = [video_prompt(processor, question) for question in questions]
    batch = encoded_batch(model, processor, videos)
    if batch is not None:
        encoded, timings = batch
        return answer_prompts_from_codebooks(
            model,
            processor,
            prompts,
            [video.codebook for video in encoded],
            [video.index_map for video in encoded],
            max_new_tokens,
            timings=timings,
            **generate_kwargs,
        )
    start = time.perf_counter()
    decoded = decode_videos(videos, num_frames or processor.default_num_frames)
    timings = {"decode": time.perf_counter() - start}
    return answer_prompts(model, processor, prompts, decoded, max_new_tokens, timings=timings, **generate_kwargs)


def ask_video(model, processor, video, question: str, **kwargs) -> VideoAnswer:
    """Answers one question about one video; see [`ask_videos`]."""
    return ask_videos(model, processor, [video], [question], **kwargs)[0]


__all__ = [
    "EncodedVideos",
    "StageTimer",
    "VIDEO_TOKENS",
    "VideoAnswer",
    "answer_prompts",
    "answer_prompts_from_codebooks",
    "ask_video",
    "ask_videos",
    "check_context",
    "decode_videos",
    "encoded_batch",
    "model_inputs",
    "encode_for_generation",
    "encoded_video",
    "stock_video_tokens",
    "synchronize",
    "timed_generate",
    "video_pixels",
    "video_prompt",
]
