# Copyright 2026 The VQToken for Transformers authors. Licensed under the Apache License, Version 2.0.
"""
The `video-text-to-text` pipeline of VQToken: ask a question about a video, get the answer and what it cost.

It ships with the model code: `save_pretrained` writes it into `custom_pipelines` of `config.json` and copies this file
next to the model code, so that `pipeline("video-text-to-text", model=folder_or_repo, trust_remote_code=True)` works
without the `vqtoken` package; `import vqtoken` registers it for in-process models. Relative imports only.

The work is done by [`answer_prompts`] (`vqtoken_inference.py`), the same staged path as `vqtoken ask`.
"""

import time

from transformers import GenerationConfig, Pipeline

from .vqtoken_inference import (
    answer_prompts,
    answer_prompts_from_codebooks,
    decode_videos,
    encoded_batch,
    video_prompt,
)


VIDEO_PIPELINE_TASK = "video-text-to-text"

# What `save_pretrained` writes under `custom_pipelines` in config.json (the form `Pipeline.save_pretrained` writes).
CUSTOM_PIPELINES = {
    VIDEO_PIPELINE_TASK: {
        "impl": "pipeline_vqtoken_llava_onevision.VQTokenVideoTextToTextPipeline",
        "pt": ["AutoModelForImageTextToText"],
        "type": "multimodal",
    }
}

# keys of a `{"type": "video", ...}` chat content entry that may hold the video
_VIDEO_KEYS = ("video", "path", "url", "file")


def _is_message(value) -> bool:
    return isinstance(value, dict) and "role" in value and "content" in value


def _is_chat(value) -> bool:
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(_is_message(item) for item in value)


class VQTokenVideoTextToTextPipeline(Pipeline):
    """
    Answers questions about videos with a VQToken model. Videos given as paths or file objects are decoded with PyAV;
    frame arrays `(T, H, W, 3)` uint8 (or lists of frames) and `DecodedVideo`s are used as they are. Every video is
    sampled to `num_frames` frames uniformly over the whole clip (default: the number the model expects,
    `processor.default_num_frames`).

    Inputs (one request, or a list of them answered in one batch):

    - `pipe(video, text="question")`: a video and a question (a list of videos with one question, or a list of
      questions, also works);
    - `pipe(messages)` or `pipe(text=messages)`: chat messages whose content holds exactly one
      `{"type": "video", "video": <path | file object | frames>}` entry (`"path"` or `"url"` with a local path are
      accepted too) and the text;
    - `pipe({"video": video, "text": "question"})`.

    A video may also be a `.vqt` file written by `vqtoken encode`, or a video
    already encoded (a `vqtoken.streaming.VideoStream`, asked as it is now): it is answered from its codebook and index
    map, without decoding, vision tower or clustering. A batch is either all encoded or all videos.

    Parameters (at construction or per call): `num_frames`, `max_new_tokens`, `return_full_text` (default `False`:
    the answer only; `True`: the prompt followed by the answer, or the chat with the assistant turn appended),
    `generate_kwargs` and any generation parameter (`do_sample`, `min_new_tokens`, ...). Generation is greedy unless
    told otherwise.

    Returns, per request, a list with one dict (a list of such lists for a list of requests):
    `generated_text`, `input_text`, `num_frames`, `visual_tokens_stock` (tokens stock OneVision would feed),
    `visual_tokens_clustered` (tokens the clustering saw), `visual_tokens` (tokens the language model read),
    `num_clusters` (K), `timings` (seconds per stage: decode, preprocess, vision, clustering, prefill, generation; the
    stages are shared by the batch).

    Example:

    ```python
    >>> from transformers import pipeline
    >>> pipe = pipeline("video-text-to-text", model="org/vqtoken-0.5b", trust_remote_code=True)
    >>> pipe("clip.mp4", text="What happens in this video?", max_new_tokens=32)[0]["generated_text"]
    ```
    """

    _load_processor = True
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False
    _pipeline_calls_generate = True
    _default_generation_config = GenerationConfig(max_new_tokens=256)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.processor is None:
            raise ValueError("The video-text-to-text pipeline needs the model's processor: pass `processor=`.")
        inner = getattr(self.model, "model", None)
        if not (hasattr(inner, "get_frame_features") and hasattr(inner, "quantize_frame_features")):
            raise TypeError(
                f"The video-text-to-text pipeline runs VQToken models, got {type(self.model).__name__}: load the "
                "model with AutoModelForImageTextToText from a VQToken folder or repository."
            )

    def _sanitize_parameters(
        self,
        num_frames=None,
        max_new_tokens=None,
        return_full_text=None,
        generate_kwargs=None,
        **kwargs,
    ):
        preprocess_params, forward_params, postprocess_params = {}, {}, {}
        if num_frames is not None:
            if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
                raise ValueError(f"`num_frames` must be a positive integer, got {num_frames!r}.")
            preprocess_params["num_frames"] = num_frames
        generation = dict(generate_kwargs or {})
        overlap = set(generation) & set(kwargs)
        if overlap:
            raise ValueError(f"{sorted(overlap)} given both in `generate_kwargs` and as parameters: use only one.")
        generation.update(kwargs)
        if max_new_tokens is not None:
            if "max_new_tokens" in generation:
                raise ValueError("`max_new_tokens` is given twice, in `generate_kwargs` and as a parameter.")
            generation["max_new_tokens"] = max_new_tokens
        if generation.get("num_return_sequences", 1) != 1:
            raise ValueError("The video-text-to-text pipeline returns one answer per video: `num_return_sequences=1`.")
        if generation:
            forward_params["generate_kwargs"] = generation
        if return_full_text is not None:
            postprocess_params["return_full_text"] = bool(return_full_text)
        return preprocess_params, forward_params, postprocess_params

    def __call__(self, inputs=None, text=None, **kwargs):
        """
        Answers one request or a list of requests (see the class documentation).

        Args:
            inputs: a video (path, file object, frame array, `DecodedVideo`), chat messages, a
                `{"video": ..., "text": ...}` dict, or a list of any of these (a batch).
            text (`str` or `list[str]` or chat messages, *optional*): the question(s) for `inputs`, or the chat.

        Returns:
            `list[dict]` for one request, `list[list[dict]]` for a list.
        """
        requests, batched = self._requests(inputs, text)
        preprocess_params, forward_params, postprocess_params = self._sanitize_parameters(**kwargs)
        preprocess_params = {**self._preprocess_params, **preprocess_params}
        forward_params = {**self._forward_params, **forward_params}
        postprocess_params = {**self._postprocess_params, **postprocess_params}
        outputs = self.run_single(requests, preprocess_params, forward_params, postprocess_params)
        return outputs if batched else outputs[0]

    @staticmethod
    def _requests(inputs, text) -> tuple[list[dict], bool]:
        """Normalises the call's inputs into `[{"video": ..., "question": ...} or {"messages": [...]}]`."""
        if inputs is None and _is_chat(text):
            return [{"messages": list(text)}], False
        if inputs is None and isinstance(text, (list, tuple)) and text and all(_is_chat(chat) for chat in text):
            return [{"messages": list(chat)} for chat in text], True
        if inputs is None:
            raise ValueError("Give a video (or chat messages holding a video) to the video-text-to-text pipeline.")
        if _is_chat(inputs):
            if text is not None:
                raise ValueError("Chat messages carry their own text: do not pass `text=` with them.")
            return [{"messages": list(inputs)}], False
        batched = isinstance(inputs, (list, tuple))
        items = list(inputs) if batched else [inputs]
        if not items:
            raise ValueError("The list of videos is empty.")
        if text is None or isinstance(text, str):
            questions = [text] * len(items)
        elif isinstance(text, (list, tuple)) and all(isinstance(question, str) for question in text):
            if not batched or len(text) != len(items):
                raise ValueError(f"Got {len(items)} videos but {len(text)} questions: give one question per video.")
            questions = list(text)
        else:
            raise ValueError("`text` must be a question, a list of questions (one per video) or chat messages.")
        requests = []
        for item, question in zip(items, questions):
            if _is_chat(item):
                requests.append({"messages": list(item)})
            elif isinstance(item, dict) and "video" in item:
                requests.append({"video": item["video"], "question": item.get("text", question)})
            else:
                requests.append({"video": item, "question": question})
        for request in requests:
            if "question" in request and not isinstance(request["question"], str):
                raise ValueError("Every video needs a question: pass `text=` (or use chat messages).")
        return requests, batched

    def preprocess(self, requests, num_frames=None):
        videos, prompts, input_texts = [], [], []
        for request in requests:
            if "messages" in request:
                video, prompt = self._chat_prompt(request["messages"])
                input_texts.append(request["messages"])
            else:
                video, prompt = request["video"], video_prompt(self.processor, request["question"])
                input_texts.append(request["question"])
            videos.append(video)
            prompts.append(prompt)
        batch = encoded_batch(self.model, self.processor, videos)
        if batch is not None:
            encoded, timings = batch
            return {"prompts": prompts, "cached_videos": encoded, "input_texts": input_texts, "timings": timings}
        start = time.perf_counter()
        decoded = decode_videos(videos, num_frames or self.processor.default_num_frames)
        timings = {"decode": time.perf_counter() - start}
        return {"prompts": prompts, "videos": decoded, "input_texts": input_texts, "timings": timings}

    def _chat_prompt(self, messages: list[dict]):
        """The video of a chat and its prompt; the chat must hold exactly one video."""
        videos, cleaned = [], []
        for message in messages:
            content = message["content"]
            if isinstance(content, str):
                cleaned.append(dict(message))
                continue
            parts = []
            for part in content:
                if isinstance(part, dict) and part.get("type") == "video":
                    found = [part[key] for key in _VIDEO_KEYS if part.get(key) is not None]
                    if not found:
                        raise ValueError(f"A video entry of the chat holds no video (keys {_VIDEO_KEYS}): {part!r}.")
                    videos.append(found[0])
                    parts.append({"type": "video"})
                else:
                    parts.append(part)
            cleaned.append({**message, "content": parts})
        if len(videos) != 1:
            raise ValueError(f"Each chat must hold exactly one video, got {len(videos)}.")
        video = videos[0]
        if isinstance(video, str) and video.startswith(("http://", "https://")):
            raise ValueError(f"Download the video first: the pipeline reads local files, got {video!r}.")
        if isinstance(video, str) and video.startswith("file://"):
            video = video[len("file://") :]
        continue_final_message = cleaned[-1]["role"] == "assistant"
        prompt = self.processor.apply_chat_template(
            cleaned, add_generation_prompt=not continue_final_message, continue_final_message=continue_final_message
        )
        return video, prompt

    def _generation_settings(self, generate_kwargs: dict) -> dict:
        """
        The `generate` keywords of one call: the user's generation parameters on top of the pipeline's, through
        transformers' own helper where it has one (5.24), else as 5.18's pipelines do (the pipeline's prepared
        `generation_config` unless the call passes one).
        """
        if hasattr(self, "_prepare_generate_kwargs"):
            return self._prepare_generate_kwargs(generate_kwargs)
        if "generation_config" not in generate_kwargs:
            generate_kwargs["generation_config"] = self.generation_config
        return generate_kwargs

    def _forward(self, model_inputs, generate_kwargs=None):
        generate_kwargs = self._generation_settings(dict(generate_kwargs or {}))
        max_new_tokens = generate_kwargs.pop("max_new_tokens", None)
        if "cached_videos" in model_inputs:
            cached_videos = model_inputs["cached_videos"]
            answers = answer_prompts_from_codebooks(
                self.model,
                self.processor,
                model_inputs["prompts"],
                [video.codebook for video in cached_videos],
                [video.index_map for video in cached_videos],
                max_new_tokens=max_new_tokens,
                timings=model_inputs["timings"],
                **generate_kwargs,
            )
        else:
            answers = answer_prompts(
                self.model,
                self.processor,
                model_inputs["prompts"],
                model_inputs["videos"],
                max_new_tokens=max_new_tokens,
                timings=model_inputs["timings"],
                **generate_kwargs,
            )
        return {"answers": answers, "prompts": model_inputs["prompts"], "input_texts": model_inputs["input_texts"]}

    def postprocess(self, model_outputs, return_full_text=False):
        results = []
        for answer, prompt, input_text in zip(
            model_outputs["answers"], model_outputs["prompts"], model_outputs["input_texts"]
        ):
            generated = answer.answer
            if return_full_text and isinstance(input_text, str):
                generated = prompt + answer.answer
            elif return_full_text:
                if input_text[-1]["role"] == "assistant":
                    last = dict(input_text[-1])
                    previous = (
                        last["content"]
                        if isinstance(last["content"], str)
                        else "".join(part.get("text", "") for part in last["content"] if part.get("type") == "text")
                    )
                    last["content"] = previous + answer.answer
                    generated = [*input_text[:-1], last]
                else:
                    generated = [*input_text, {"role": "assistant", "content": answer.answer}]
            report = answer.to_dict()
            del report["answer"]
            results.append([{"generated_text": generated, "input_text": input_text, **report}])
        return results


__all__ = ["CUSTOM_PIPELINES", "VIDEO_PIPELINE_TASK", "VQTokenVideoTextToTextPipeline"]
