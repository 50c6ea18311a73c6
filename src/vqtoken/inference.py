"""
Ask questions about videos with a VQToken model, stage by stage, with the time of each stage.

The stages follow the data path of a video: decode (PyAV) -> preprocess (processor) -> vision (tower + projector) ->
clustering (K-means, VQ-Attention) -> prefill (time to the first generated token) -> generation (the other tokens).
"""

import time
from dataclasses import asdict, dataclass, field

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from .video_io import DecodedVideo, load_video


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


@torch.no_grad()
def ask_videos(
    model,
    processor,
    videos: list,
    questions: list[str],
    num_frames: int = 32,
    max_new_tokens: int = 64,
    **generate_kwargs,
) -> list[VideoAnswer]:
    """
    Answers `questions[i]` about `videos[i]` for every `i`, in one batch.

    Args:
        model: a [`VQTokenLlavaOnevisionForConditionalGeneration`] in eval mode.
        processor: its [`VQTokenLlavaOnevisionProcessor`].
        videos: paths, file objects, frame arrays `(T, H, W, 3)` or [`DecodedVideo`]s. All are sampled to
            `num_frames` frames (the processor needs one frame count per batch).
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
    device = model.device
    timings = {}

    start = time.perf_counter()
    decoded = [video if isinstance(video, DecodedVideo) else load_video(video, num_frames=num_frames) for video in videos]
    timings["decode"] = time.perf_counter() - start

    start = time.perf_counter()
    frame_counts = {len(video.frames) for video in decoded}
    if len(frame_counts) > 1:
        raise ValueError(f"The videos of one batch must have the same number of frames, got {sorted(frame_counts)}.")
    processor.tokenizer.padding_side = "left"
    inputs = processor(
        text=[video_prompt(processor, question) for question in questions],
        videos=[video.frames for video in decoded],
        return_tensors="pt",
        padding=True,
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
        video_outputs = None
        video_token_counts = [int(row.sum()) for row in inputs["input_ids"] == config.video_token_id]
        num_clusters = [None] * len(decoded)
        generate_inputs = {"pixel_values_videos": pixel_values_videos}
    else:
        video_outputs = model.model.quantize_frame_features(frame_features)
        video_token_counts = [tokens.shape[0] for tokens in video_outputs.pooler_output]
        num_clusters = [int(k) for k in video_outputs.num_clusters]
        generate_inputs = {"video_outputs": video_outputs}
    _synchronize(device)
    timings["clustering"] = time.perf_counter() - start

    clock = _GenerationClock()
    settings = {"max_new_tokens": max_new_tokens, "do_sample": False, **generate_kwargs}
    settings["logits_processor"] = LogitsProcessorList([*settings.get("logits_processor", []), clock])
    start = time.perf_counter()
    output_ids = model.generate(**inputs, **generate_inputs, **settings)
    _synchronize(device)
    end = time.perf_counter()
    first_token = clock.first_token_time if clock.first_token_time is not None else end
    timings["prefill"] = first_token - start
    timings["generation"] = end - first_token

    # generate returns the re-aligned prompt followed by one column per decoding step
    answers = processor.batch_decode(output_ids[:, output_ids.shape[1] - clock.steps :], skip_special_tokens=True)
    grid = config.vision_config.image_size // config.vision_config.patch_size
    stock_per_frame = (-(-grid // 2)) ** 2
    return [
        VideoAnswer(
            answer=answer.strip(),
            num_frames=len(video.frames),
            visual_tokens_stock=len(video.frames) * stock_per_frame + 1,
            visual_tokens_clustered=len(video.frames) * frame_features.shape[2],
            visual_tokens=count,
            num_clusters=k,
            timings=dict(timings),
        )
        for answer, video, count, k in zip(answers, decoded, video_token_counts, num_clusters)
    ]


def ask_video(model, processor, video, question: str, **kwargs) -> VideoAnswer:
    """Answers one question about one video; see [`ask_videos`]."""
    return ask_videos(model, processor, [video], [question], **kwargs)[0]
