"""
lmms-eval models `vqtoken_hf`: a VQToken folder or Hub id evaluated by lmms-eval, several requests per `generate` call.

`VQTokenChat` (lmms-eval's default: tasks give chat messages) and `VQTokenSimple` (`--force_simple`: tasks give a
context string and visuals) turn each request into one [`Prompt`] (the chat prompt and its images or its one video)
and answer batches of prompts the same way:

- videos are decoded with PyAV (`vqtoken.video_io`: `max_frames_num` frames sampled uniformly over the whole clip; a
  folder of frame images, as some MVBench tasks give, is sampled the same way) and answered by
  `vqtoken.inference.answer_prompts`, one `generate` call per batch in which every video has its own K;
- images and text-only prompts take the stock LLaVA-OneVision path of the model (images are never compressed);
- `loglikelihood` scores one continuation at a time, as lmms-eval's stock models do, and encodes a video once for
  the consecutive requests that share it (the choices of a multiple-choice question).

Requests are sorted by prompt length and grouped by generation settings with lmms-eval's own `Collator`, as its
models do, so a batch holds requests with the same settings. Every result is a `GenerationResult` whose `token_counts`
([`VisualTokenCounts`]) carry the visual tokens the language model read, K and the stock count: lmms-eval writes them
into each logged sample, where `vqtoken.evaluation.token_density` reads them.

Logging goes through lmms-eval's logger (loguru), so that `--verbosity` applies to it as to the rest of the run.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from lmms_eval import utils as lmms_eval_utils
from lmms_eval.api.instance import GenerationResult, Instance, TokenCounts
from lmms_eval.api.model import lmms
from lmms_eval.protocol import ChatMessages
from loguru import logger as eval_logger
from PIL import Image
from tqdm import tqdm
from transformers import GenerationConfig

from vqtoken.loading import load_model_and_processor
from vqtoken.modeling.configuration_vqtoken_llava_onevision import VQTokenLlavaOnevisionConfig
from vqtoken.modeling.video_io import (
    DecodedVideo,
    VideoDecodeError,
    decode_concurrently,
    load_video,
    uniform_indices,
)
from vqtoken.modeling.vqtoken_inference import (
    answer_prompts,
    encode_for_generation,
    model_inputs,
    stock_video_tokens,
    timed_generate,
)

from .lmms_eval_plugin import MODEL_ID
from .token_density import video_statistics


MODEL_ARGS = ("pretrained", "device", "dtype", "batch_size", "max_frames_num", "attn_implementation")
DEFAULT_MAX_NEW_TOKENS = 1024  # lmms-eval's stock LLaVA-OneVision models' default when a task sets none
# lmms-eval settings that are not `generate` arguments, or that a request may leave unset (None)
SAMPLING_SETTINGS = ("temperature", "top_p", "top_k")
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass
class VisualTokenCounts(TokenCounts):
    """
    What the language model read for one request's visual input, logged with the sample (`token_counts`).

    Attributes:
        modality: `"video"`, `"image"` or `"text"`.
        visual_tokens: tokens the language model read for the visual input (the video's tokens with their newline, or
            the image tokens); a list with one entry per round for multi-round requests.
        visual_tokens_stock: tokens stock LLaVA-OneVision reads for the same input (same layout).
        num_clusters: K of the video (`None` for images, text, mode `"off"`; a list per round for multi-round).
        error: why the request got an empty answer (a video that could not be decoded), else `None`.
    """

    modality: str = "text"
    visual_tokens: int | list[int] = 0
    visual_tokens_stock: int | list[int] = 0
    num_clusters: int | None | list[int | None] = None
    error: str | None = None

    def to_dict(self) -> dict:
        record = super().to_dict()
        record.update(
            modality=self.modality,
            visual_tokens=self.visual_tokens,
            visual_tokens_stock=self.visual_tokens_stock,
            num_clusters=self.num_clusters,
        )
        if self.error is not None:
            record["error"] = self.error
        return record


@dataclass
class Prompt:
    """
    One question for the model: the chat prompt (generation prompt included) and its visual input.

    Attributes:
        conversation: the chat messages, in the processor's chat-template format.
        text: the prompt, with one `<image>` per image or one `<video>`.
        label: names the request in messages, e.g. `"mvbench_action_sequence doc 12"`.
        images: PIL images, in prompt order.
        video: the video (a path), or `None`.
    """

    conversation: list
    text: str
    label: str
    images: list = field(default_factory=list)
    video: str | None = None

    @property
    def modality(self) -> str:
        return "video" if self.video is not None else "image" if self.images else "text"


def positive_int(name: str, value) -> int:
    """`value` (an int, or digits as lmms-eval passes `--batch_size`) as an int >= 1; `ValueError` naming `name`."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"vqtoken_hf: `{name}` must be a positive integer, got {value!r}.")
    return value


def generation_settings(gen_kwargs: dict) -> tuple[int, list[str], dict]:
    """
    Reads a task's generation settings as lmms-eval's models do.

    `temperature` 0 (or unset) is greedy and a positive one samples, unless `do_sample` says otherwise; a sampling
    setting is dropped when greedy; `until` stops generation at any of its strings (`stop_strings`) and the answer is
    cut before the first one. Other `generate` settings (`num_beams`, `repetition_penalty`, ...) pass through; a key
    that `generate` does not know is dropped with a warning.

    Returns:
        `(max_new_tokens, until, generate_kwargs)`.
    """
    settings = {key: value for key, value in gen_kwargs.items() if value is not None}
    until = settings.pop("until", None) or []
    until = [until] if isinstance(until, str) else list(until)
    if not all(isinstance(stop, str) for stop in until):
        raise ValueError(f"vqtoken_hf: `until` must be a string or a list of strings, got {until!r}.")
    until = [stop for stop in until if stop]
    max_new_tokens = positive_int("max_new_tokens", settings.pop("max_new_tokens", DEFAULT_MAX_NEW_TOKENS))
    temperature = settings.get("temperature")
    do_sample = settings.pop("do_sample", None)
    if do_sample is None:
        do_sample = temperature is not None and temperature > 0
    elif temperature is not None and temperature <= 0:
        do_sample = False  # temperature 0 is greedy decoding, whatever `do_sample` says
    if not do_sample:
        for key in SAMPLING_SETTINGS:
            settings.pop(key, None)
    for key in [key for key in settings if not hasattr(GENERATION_DEFAULTS, key)]:
        warn_ignored_setting(key, repr(settings.pop(key)))
    return max_new_tokens, until, {"do_sample": bool(do_sample), **settings}


GENERATION_DEFAULTS = GenerationConfig()


@lru_cache(maxsize=None)
def warn_ignored_setting(key: str, value: str):
    """Warns once per setting and value (`value` as its repr) that `generate` has no such setting."""
    eval_logger.warning(f"{MODEL_ID}: ignoring the generation setting {key}={value}: `generate` has no such one.")


def cut_at_stop_strings(answer: str, until: list[str]) -> str:
    for stop in until:
        answer = answer.split(stop)[0]
    return answer


def read_video(video: str, num_frames: int) -> DecodedVideo:
    """
    `num_frames` frames sampled uniformly over `video`: a video file (decoded with PyAV), or a folder of frame images
    in name order (only the sampled images are read).
    """
    folder = Path(video)
    if not folder.is_dir():
        return load_video(video, num_frames=num_frames)
    images = sorted(path for path in folder.iterdir() if path.suffix.lower() in FRAME_SUFFIXES)
    if not images:
        raise VideoDecodeError(f"{video} is a folder without frame images ({', '.join(FRAME_SUFFIXES)}).")
    indices = uniform_indices(len(images), num_frames)
    frames = np.stack([np.asarray(Image.open(images[index]).convert("RGB")) for index in indices])
    return load_video(frames, num_frames=num_frames)


class VQTokenSimple(lmms):
    """
    `vqtoken_hf` for tasks that give a context and visuals (`--force_simple`, and the only form of `loglikelihood`).

    Args (lmms-eval's `--model_args`, plus its `--batch_size` and `--device`):
        pretrained: a VQToken folder or Hub id, or a stock LLaVA-OneVision one (its VQ-Attention then starts from its
            initialisation); default: the package's built-in default model.
        device: `auto` (CUDA when available), `cpu`, `cuda`, `cuda:N`.
        dtype: `auto` (bfloat16 on CUDA, float32 elsewhere), `float32`, `bfloat16`, `float16`.
        batch_size: requests per `generate` call.
        max_frames_num: frames sampled per video (default: the model's own, `processor.default_num_frames`).
        attn_implementation: `sdpa`, `eager`, `flash_attention_2`, ... (default: transformers' choice).
        vqtoken_*: any VQToken setting (`vqtoken_mode`, `vqtoken_selection_method`, `vqtoken_min_clusters`,
            `vqtoken_max_clusters`, `vqtoken_seed`, `vqtoken_spatial_pool`, ...), validated by the configuration.
    """

    is_simple = True
    GEN_KWARGS_POSITION = 1  # of the generation settings in a request's arguments

    def __init__(
        self,
        pretrained: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int | str = 1,
        max_frames_num: int | None = None,
        attn_implementation: str | None = None,
        **settings,
    ):
        super().__init__()
        unknown = sorted(name for name in settings if not name.startswith("vqtoken_"))
        if unknown:
            raise ValueError(
                f"vqtoken_hf: unknown model_args {', '.join(unknown)}. Known: {', '.join(MODEL_ARGS)} and the "
                f"settings {', '.join(VQTokenLlavaOnevisionConfig.vqtoken_setting_names())}."
            )
        VQTokenLlavaOnevisionConfig.reject_unknown_settings(settings)
        self.batch_size_per_gpu = positive_int("batch_size", batch_size)
        if max_frames_num is not None:
            max_frames_num = positive_int("max_frames_num", max_frames_num)
        accelerator = Accelerator()
        if accelerator.num_processes > 1:
            # data parallel (`accelerate launch`): lmms-eval gives each process its share of the requests
            if device in (None, "auto"):
                device = f"cuda:{accelerator.local_process_index}"
            self.accelerator = accelerator
            self._rank, self._world_size = accelerator.process_index, accelerator.num_processes
        self.model, self.processor = load_model_and_processor(
            pretrained,
            device=device,
            dtype=dtype,
            attn_implementation=attn_implementation,
            **settings,
        )
        self.max_frames_num = max_frames_num or self.processor.default_num_frames
        self._video_records = defaultdict(list)  # task -> token counts of its decoded videos, as logged
        self._failed = []  # (label, video, message) of the videos that could not be decoded
        config = self.model.config
        if config.vqtoken_selection_method == "fixed":
            clusters = f"K = {config.vqtoken_max_clusters}"
        else:
            low, high = config.vqtoken_min_clusters, config.vqtoken_max_clusters
            clusters = f"K by {config.vqtoken_selection_method} in {low}..{high}"
        eval_logger.info(
            f"{MODEL_ID}: {pretrained or 'built-in default model'}, mode {config.vqtoken_mode!r}, {clusters}, "
            f"{self.max_frames_num} frames per video, batch size {self.batch_size_per_gpu}, {self.model.device}, "
            f"{self.model.dtype}."
        )

    @property
    def batch_size(self) -> int:
        return self.batch_size_per_gpu

    @property
    def device(self) -> torch.device:
        return self.model.device

    # ----------------------------------------------------------------------------------------------------------------
    # Requests -> prompts

    def _doc(self, task: str, split: str, doc_id: int) -> dict:
        return self.task_dict[task][split][doc_id]

    def prompt_from_context(self, context: str, visuals, label: str) -> Prompt:
        """
        The [`Prompt`] of a simple request: `visuals` (what the task's `doc_to_visual` returned: PIL images, one video
        path, or nothing) before `context` in one user turn, unless `context` already holds their placeholders.
        """
        images, videos = [], []
        for visual in visuals or []:
            if isinstance(visual, Image.Image):
                images.append(visual)
            elif isinstance(visual, str):
                videos.append(visual)
            else:
                raise ValueError(
                    f"vqtoken_hf: {label}: unsupported visual input of type {type(visual).__name__} (expected PIL "
                    "images or a video path)."
                )
        self._check_media(images, videos, label)
        content = [{"type": "image"} for _ in images] + [{"type": "video"} for _ in videos]
        if self.processor.image_token in context or self.processor.video_token in context:
            content = []
        content.append({"type": "text", "text": context})
        return self._prompt([{"role": "user", "content": content}], label, images, videos)

    def prompt_from_messages(self, messages: list, label: str) -> Prompt:
        """The [`Prompt`] of a chat request (`doc_to_messages` of lmms-eval's chat tasks)."""
        images, videos, conversation = [], [], []
        for message in ChatMessages(messages=messages).messages:
            content = []
            for item in message.content:
                if item.type == "text":
                    content.append({"type": "text", "text": item.text})
                elif item.type == "image":
                    image = item.url if isinstance(item.url, Image.Image) else Image.open(item.url)
                    images.append(image.convert("RGB"))
                    content.append({"type": "image"})
                elif item.type == "video" and isinstance(item.url, str) and item.start_time is None:
                    videos.append(item.url)
                    content.append({"type": "video"})
                else:
                    raise ValueError(
                        f"vqtoken_hf: {label}: unsupported {item.type} input {item.url!r} (expected text, images or a "
                        "whole video file)."
                    )
            conversation.append({"role": message.role, "content": content})
        self._check_media(images, videos, label)
        return self._prompt(conversation, label, images, videos)

    def _prompt(self, conversation: list, label: str, images: list, videos: list) -> Prompt:
        text = self.processor.apply_chat_template(conversation, add_generation_prompt=True)
        return Prompt(conversation, text, label, images, videos[0] if videos else None)

    @staticmethod
    def _check_media(images: list, videos: list, label: str):
        if len(videos) > 1:
            raise ValueError(f"vqtoken_hf: {label} holds {len(videos)} videos; vqtoken_hf answers one per question.")
        if videos and images:
            raise ValueError(f"vqtoken_hf: {label} mixes images and a video; vqtoken_hf answers one or the other.")

    # ----------------------------------------------------------------------------------------------------------------
    # Prompts -> answers

    def answer(self, prompts: list[Prompt], gen_kwargs: dict) -> list[tuple[str, VisualTokenCounts]]:
        """
        Answers `prompts` with one `generate` call per modality present (videos, images, text), in their order.

        Returns:
            `(answer, counts)` per prompt; a video that cannot be decoded gets `""` and its error in `counts.error`.
        """
        max_new_tokens, until, generate_kwargs = generation_settings(gen_kwargs)
        if until:
            generate_kwargs.update(stop_strings=until, tokenizer=self.processor.tokenizer)
        results = [None] * len(prompts)
        for modality in ("video", "image", "text"):
            positions = [index for index, prompt in enumerate(prompts) if prompt.modality == modality]
            if not positions:
                continue
            batch = [prompts[index] for index in positions]
            answer_batch = self._answer_videos if modality == "video" else self._answer_images_or_text
            for index, (answer, counts) in zip(positions, answer_batch(batch, max_new_tokens, generate_kwargs)):
                results[index] = (cut_at_stop_strings(answer, until), counts)
        return results

    def _answer_videos(self, prompts: list[Prompt], max_new_tokens: int, generate_kwargs: dict):
        def read(prompt: Prompt) -> DecodedVideo | str:
            try:
                return read_video(prompt.video, self.max_frames_num)
            except (VideoDecodeError, OSError) as error:
                return f"{type(error).__name__}: {error}"

        decoded, failures = {}, {}
        videos = decode_concurrently(read, prompts, source=lambda prompt: prompt.video)
        for index, (prompt, video) in enumerate(zip(prompts, videos)):
            if isinstance(video, DecodedVideo):
                decoded[index] = video
                continue
            failures[index] = video
            self._failed.append((prompt.label, prompt.video, video))
            eval_logger.error(f"vqtoken_hf: {prompt.label}: cannot decode {prompt.video}: {video}")
        answers = {}
        if decoded:
            order = sorted(decoded)
            video_answers = answer_prompts(
                self.model,
                self.processor,
                [prompts[index].text for index in order],
                [decoded[index] for index in order],
                max_new_tokens=max_new_tokens,
                **generate_kwargs,
            )
            answers = dict(zip(order, video_answers))
        results = []
        for index in range(len(prompts)):
            if index in failures:
                stock = stock_video_tokens(self.model.config, self.max_frames_num)
                counts = VisualTokenCounts(modality="video", visual_tokens_stock=stock, error=failures[index])
                results.append(("", counts))
                continue
            answer = answers[index]
            counts = VisualTokenCounts(
                modality="video",
                visual_tokens=answer.visual_tokens,
                visual_tokens_stock=answer.visual_tokens_stock,
                num_clusters=answer.num_clusters,
            )
            results.append((answer.answer, counts))
        return results

    def _answer_images_or_text(self, prompts: list[Prompt], max_new_tokens: int, generate_kwargs: dict):
        inputs = model_inputs(
            self.model,
            self.processor,
            [prompt.text for prompt in prompts],
            [image for p in prompts for image in p.images],
        )
        image_tokens = (inputs["input_ids"] == self.model.config.image_token_id).sum(dim=1).tolist()
        answers = timed_generate(self.model, self.processor, inputs, {}, max_new_tokens, **generate_kwargs)
        modality = prompts[0].modality
        return [
            (answer, VisualTokenCounts(modality=modality, visual_tokens=count, visual_tokens_stock=count))
            for answer, count in zip(answers, image_tokens)
        ]

    def _record(self, task: str, counts: VisualTokenCounts):
        if counts.modality == "video" and counts.error is None:
            self._video_records[task].append(counts.to_dict())

    def _log_totals(self):
        for task, records in sorted(self._video_records.items()):
            statistics = video_statistics(records)
            eval_logger.info(
                f"{MODEL_ID}: {task}: {statistics['videos']} videos, mean visual tokens per video "
                f"{statistics['mean_visual_tokens']:.2f} "
                f"(stock LLaVA-OneVision {statistics['mean_visual_tokens_stock']:.1f})"
            )
        if self._failed:
            eval_logger.error(
                f"{MODEL_ID}: {len(self._failed)} videos could not be decoded and got empty answers: "
                + "; ".join(f"{label}: {video}" for label, video, _ in self._failed)
            )

    # ----------------------------------------------------------------------------------------------------------------
    # lmms-eval requests

    def _batches(self, requests: list[Instance]):
        """lmms-eval's ordering: longest context first, grouped by generation settings; yields `(indices, batch)`."""
        arguments = [(index, request.args) for index, request in enumerate(requests)]

        def longest_first(item):
            context = item[1][0]
            return -len(self.processor.tokenizer(context).input_ids), context

        collator = lmms_eval_utils.Collator(
            arguments, longest_first, group_fn=lambda item: item[1][self.GEN_KWARGS_POSITION], grouping=True
        )
        for chunk in collator.get_batched(n=self.batch_size, batch_fn=None):
            yield [index for index, _ in chunk], [args for _, args in chunk]

    def _progress(self, total: int, description: str):
        return tqdm(total=total, disable=self.rank != 0, desc=f"{MODEL_ID} {description}")

    def generate_until(self, requests: list[Instance]) -> list[GenerationResult]:
        results = [None] * len(requests)
        with self._progress(len(requests), "responding") as progress:
            for indices, batch in self._batches(requests):
                prompts = [self._first_prompt(args) for args in batch]
                answers = self.answer(prompts, batch[0][self.GEN_KWARGS_POSITION])
                for index, args, (answer, counts) in zip(indices, batch, answers):
                    self._record(args[-2], counts)
                    results[index] = GenerationResult(text=answer, token_counts=counts)
                progress.update(len(batch))
        self._log_totals()
        return results

    def _first_prompt(self, args: tuple) -> Prompt:
        """The prompt of a `generate_until` request, or a first round: `(context, gen_kwargs, doc_to_visual, ...)`."""
        context, _, doc_to_visual, *_, doc_id, task, split = args
        return self.prompt_from_context(context, doc_to_visual(self._doc(task, split, doc_id)), f"{task} doc {doc_id}")

    def _next_prompt(self, args: tuple, round_idx: int, previous_output: list[str], previous_round_info):
        """
        The next round of a multi-round request, from the task's `doc_to_text(doc, round_idx=...)`: `(prompt or None
        when the task ends the request, round info)`.
        """
        context, _, _, doc_to_text, doc_id, task, split = args
        visuals, context, terminal, _, info = doc_to_text(
            self._doc(task, split, doc_id),
            previous_output=previous_output,
            round_idx=round_idx,
            previous_round_info=previous_round_info,
        )
        if terminal:
            return None, info
        return self.prompt_from_context(context, visuals, f"{task} doc {doc_id} round {round_idx}"), info

    def generate_until_multi_round(self, requests: list[Instance]) -> list[GenerationResult]:
        """
        Multi-round requests in batches: each round's prompts (from the task, given the earlier answers) are answered
        together, until the task ends every request of the batch.
        """
        results = [None] * len(requests)
        with self._progress(len(requests), "multi-round responding") as progress:
            for indices, batch in self._batches(requests):
                rounds = [[] for _ in batch]
                counts = [[] for _ in batch]
                prompts = {position: self._first_prompt(args) for position, args in enumerate(batch)}
                infos = [None] * len(batch)
                round_idx = 0
                while prompts:
                    positions = sorted(prompts)
                    gen_kwargs = batch[0][self.GEN_KWARGS_POSITION]
                    answers = self.answer([prompts[position] for position in positions], gen_kwargs)
                    for position, (answer, round_counts) in zip(positions, answers):
                        rounds[position].append(answer)
                        counts[position].append(round_counts)
                        self._record(batch[position][-2], round_counts)
                    round_idx += 1
                    prompts = {}
                    for position in positions:
                        prompt, infos[position] = self._next_prompt(
                            batch[position], round_idx, list(rounds[position]), infos[position]
                        )
                        if prompt is not None:
                            prompts[position] = prompt
                for index, answers, request_counts in zip(indices, rounds, counts):
                    results[index] = GenerationResult(text=answers, token_counts=merge_rounds(request_counts))
                progress.update(len(batch))
        self._log_totals()
        return results

    @torch.no_grad()
    def loglikelihood(self, requests: list[Instance]) -> list[GenerationResult]:
        """
        `(loss, is_greedy)` of each continuation after its context, as lmms-eval's stock LLaVA-OneVision models compute
        it: the chat prompt followed by the continuation as the assistant's turn (its end-of-turn included), `loss` the
        mean negative log-likelihood of those tokens (multiple-choice tasks pick the smallest), `is_greedy` whether
        greedy decoding would produce them all.

        The pair is returned as the `text` of a `GenerationResult`: lmms-eval 0.7.3 turns a bare `(float, bool)` tuple
        into its string, which its multiple-choice scoring then rejects.
        """
        results = []
        video = VideoCache()
        with self._progress(len(requests), "scoring") as progress:
            for request in requests:
                context, continuation, doc_to_visual, doc_id, task, split = request.args
                doc = self._doc(task, split, doc_id)
                if not isinstance(continuation, str):
                    continuation = continuation(doc)
                prompt = self.prompt_from_context(context, doc_to_visual(doc), f"{task} doc {doc_id}")
                loss, greedy, counts = self._score(prompt, continuation, video)
                self._record(task, counts)
                results.append(GenerationResult(text=(loss, greedy), token_counts=counts))
                progress.update(1)
        self._log_totals()
        return results

    def _score(self, prompt: Prompt, continuation: str, video: "VideoCache") -> tuple[float, bool, VisualTokenCounts]:
        """Loss and greediness of `continuation` as the answer to `prompt` (see [`loglikelihood`]), and its counts."""
        answer_turn = {"role": "assistant", "content": [{"type": "text", "text": continuation}]}
        text = self.processor.apply_chat_template([*prompt.conversation, answer_turn], add_generation_prompt=False)
        if not text.startswith(prompt.text):
            raise ValueError(f"vqtoken_hf: {prompt.label}: the chat template does not extend the prompt by an answer.")
        tokenizer = self.processor.tokenizer
        scored_length = len(tokenizer(text).input_ids) - len(tokenizer(prompt.text).input_ids)
        frames = [video.frames(prompt.video, self.max_frames_num)] if prompt.video is not None else None
        inputs = model_inputs(self.model, self.processor, [text], prompt.images, frames)
        input_ids, attention_mask = inputs.pop("input_ids"), inputs.pop("attention_mask")
        config = self.model.config
        counts = VisualTokenCounts(modality=prompt.modality)
        if prompt.video is not None:
            encoded = video.encoding(self.model, inputs.pop("pixel_values_videos"))
            input_ids, attention_mask, _ = self.model.align_video_placeholders(
                input_ids, attention_mask, encoded.visual_tokens
            )
            inputs["mm_encoder_outputs"] = {"video": encoded.video_outputs}
            counts.visual_tokens, counts.num_clusters = encoded.visual_tokens[0], encoded.num_clusters[0]
            counts.visual_tokens_stock = stock_video_tokens(config, self.max_frames_num)
        elif prompt.images:
            counts.visual_tokens = counts.visual_tokens_stock = int((input_ids == config.image_token_id).sum())
        # the continuation is the last `scored_length` tokens: only the logits that predict them are computed
        logits = self.model(
            input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=scored_length + 1, **inputs
        ).logits
        targets = input_ids[0, -scored_length:]
        log_probs = torch.log_softmax(logits[0, :-1].float(), dim=-1)
        loss = -log_probs.gather(1, targets[:, None]).mean()
        greedy = bool((log_probs.argmax(dim=-1) == targets).all())
        return float(loss), greedy, counts


class VideoCache:
    """
    The last video scored, decoded and encoded: a multiple-choice question asks lmms-eval for one loglikelihood per
    choice, each with the same video, one after the other.
    """

    def __init__(self):
        self.video, self.decoded, self.encoded = None, None, None

    def frames(self, video: str, num_frames: int):
        """`uint8 (num_frames, H, W, 3)` frames of `video`."""
        if video != self.video:
            self.video, self.decoded, self.encoded = video, read_video(video, num_frames).frames, None
        return self.decoded

    def encoding(self, model, pixel_values_videos: torch.Tensor):
        """The tokens the language model reads for the current video (`encode_for_generation` of its pixel values)."""
        if self.encoded is None:
            self.encoded = encode_for_generation(model, pixel_values_videos)
        return self.encoded


def merge_rounds(rounds: list[VisualTokenCounts]) -> VisualTokenCounts:
    """The counts of a multi-round request: one entry per round in `visual_tokens`, `visual_tokens_stock` and K."""
    modalities = {counts.modality for counts in rounds}
    errors = [counts.error for counts in rounds if counts.error is not None]
    return VisualTokenCounts(
        modality=modalities.pop() if len(modalities) == 1 else "mixed",
        visual_tokens=[counts.visual_tokens for counts in rounds],
        visual_tokens_stock=[counts.visual_tokens_stock for counts in rounds],
        num_clusters=[counts.num_clusters for counts in rounds],
        error="; ".join(errors) or None,
    )


class VQTokenChat(VQTokenSimple):
    """`vqtoken_hf` for lmms-eval's chat tasks (`doc_to_messages`): the default form of the model."""

    is_simple = False
    GEN_KWARGS_POSITION = 2

    def _first_prompt(self, args: tuple) -> Prompt:
        _, doc_to_messages, _, doc_id, task, split = args
        return self.prompt_from_messages(doc_to_messages(self._doc(task, split, doc_id)), f"{task} doc {doc_id}")

    def _next_prompt(self, args: tuple, round_idx: int, previous_output: list[str], previous_round_info):
        _, doc_to_messages, _, doc_id, task, split = args
        payload = doc_to_messages(
            self._doc(task, split, doc_id),
            round_idx=round_idx,
            previous_output=previous_output,
            previous_round_info=previous_round_info,
        )
        messages, terminal, _, info = payload
        if terminal:
            return None, info
        return self.prompt_from_messages(messages, f"{task} doc {doc_id} round {round_idx}"), info


__all__ = ["VQTokenChat", "VQTokenSimple", "VisualTokenCounts", "generation_settings"]
