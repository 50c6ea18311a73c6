"""The `video-text-to-text` pipeline: in process (registered by `import vqtoken`) and as remote code."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from helpers import BLOCK_VQTOKEN, random_clip, video_prompt
from transformers import pipeline

import vqtoken
from vqtoken.synthetic import ClipSpec, render_clip, write_clip
from vqtoken.video_io import load_video


QUESTION = "what colour is the square ?"
NEW_TOKENS = 3
SETTINGS = dict(
    vqtoken_mode="attention", vqtoken_selection_method="silhouette", vqtoken_min_clusters=2, vqtoken_max_clusters=6
)


def generation_kwargs(processor):
    # special and blank tokens decode to nothing: keep them out so that the compared answers are real text
    tokenizer = processor.tokenizer
    blank = [
        index for index in range(len(tokenizer)) if not tokenizer.decode([index], skip_special_tokens=True).strip()
    ]
    return {"max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS, "suppress_tokens": blank}


def greedy_answer(model, processor, frames, question=QUESTION, prompt=None):
    """The reference: the processor and plain `generate` on the same frames."""
    prompt = prompt if prompt is not None else video_prompt(processor, question)
    inputs = processor(text=[prompt], videos=[frames], return_tensors="pt")
    with torch.no_grad():
        output = model.generate(**inputs, do_sample=False, **generation_kwargs(processor))
    return processor.decode(output[0, -NEW_TOKENS:], skip_special_tokens=True).strip()


@pytest.fixture
def clip_file(tmp_path):
    clip = render_clip(ClipSpec((0, 255, 0), seed=3), num_frames=8, height=32, width=32)
    return write_clip(tmp_path / "clip.mp4", clip, fps=8)


def test_pipeline_inputs_single_and_batched_match_generate(build_model, clip_file):
    model, processor = build_model(**SETTINGS)
    pipe = pipeline("video-text-to-text", model=model, processor=processor, num_frames=4)
    assert isinstance(pipe, vqtoken.VQTokenVideoTextToTextPipeline)
    kwargs = generation_kwargs(processor)
    array = random_clip(0)
    file_frames = load_video(clip_file, num_frames=4).frames
    expected_array = greedy_answer(model, processor, array)
    expected_file = greedy_answer(model, processor, file_frames)
    assert expected_array and expected_file

    from_array = pipe(array, text=QUESTION, **kwargs)
    assert isinstance(from_array, list) and len(from_array) == 1
    result = from_array[0]
    assert result["generated_text"] == expected_array and result["input_text"] == QUESTION
    assert result["num_frames"] == 4 and result["visual_tokens_stock"] == 4 * 4 + 1
    assert result["visual_tokens_clustered"] == 4 * 16
    assert 2 <= result["num_clusters"] <= 6 and result["visual_tokens"] == max(4, result["num_clusters"]) + 1
    assert list(result["timings"]) == ["decode", "preprocess", "vision", "clustering", "prefill", "generation"]

    assert pipe(str(clip_file), text=QUESTION, **kwargs)[0]["generated_text"] == expected_file
    with open(clip_file, "rb") as handle:
        assert pipe(handle, text=QUESTION, **kwargs)[0]["generated_text"] == expected_file
    chat = [
        {"role": "user", "content": [{"type": "video", "path": str(clip_file)}, {"type": "text", "text": QUESTION}]}
    ]
    from_chat = pipe(chat, **kwargs)[0]
    assert from_chat["generated_text"] == expected_file and from_chat["input_text"] == chat
    full = pipe(text=chat, return_full_text=True, **kwargs)[0]["generated_text"]
    assert full == [*chat, {"role": "assistant", "content": expected_file}]

    # a list is one batch; each answer is the one the video gets alone
    batch = pipe([array, {"video": str(clip_file), "text": QUESTION}, chat], text=QUESTION, **kwargs)
    assert [answers[0]["generated_text"] for answers in batch] == [expected_array, expected_file, expected_file]
    full_text = pipe([array], text=[QUESTION], return_full_text=True, **kwargs)[0][0]["generated_text"]
    assert full_text == video_prompt(processor, QUESTION) + expected_array


def test_pipeline_rejects_bad_requests(build_model):
    model, processor = build_model(vqtoken_mode="centroids", vqtoken_max_clusters=4)
    pipe = pipeline("video-text-to-text", model=model, processor=processor, num_frames=4)
    with pytest.raises(ValueError, match="one question per video"):
        pipe([random_clip(0), random_clip(1)], text=["a", "b", "c"])
    two_videos = [
        {
            "role": "user",
            "content": [{"type": "video", "video": random_clip(0)}, {"type": "video", "video": random_clip(1)}],
        }
    ]
    with pytest.raises(ValueError, match="exactly one video"):
        pipe(two_videos)
    with pytest.raises(ValueError, match="needs a question"):
        pipe(random_clip(0))
    with pytest.raises(ValueError, match="num_frames"):
        pipe(random_clip(0), text="a", num_frames=0)
    with pytest.raises(vqtoken.video_io.VideoDecodeError):
        pipe(__file__, text="a")  # a file that is not a video


def test_save_pretrained_declares_the_pipeline(build_model, tmp_path):
    model, processor = build_model(vqtoken_mode="centroids", vqtoken_max_clusters=4)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["custom_pipelines"]["video-text-to-text"] == {
        "impl": "pipeline_vqtoken_llava_onevision.VQTokenVideoTextToTextPipeline",
        "pt": ["AutoModelForImageTextToText"],
        "type": "multimodal",
    }
    assert {"pipeline_vqtoken_llava_onevision.py", "vqtoken_inference.py", "video_io.py"} <= set(os.listdir(tmp_path))
    # the in-memory config stays without it, so the registered task still works on this model object
    assert getattr(model.config, "custom_pipelines", None) is None
    pipe = pipeline("video-text-to-text", model=model, processor=processor, num_frames=4)
    assert pipe(random_clip(0), text=QUESTION, max_new_tokens=1)[0]["num_clusters"] == 4
    # a model object loaded from the folder works by task name too (`pipeline()` reads no config for objects)
    from transformers import AutoModelForImageTextToText

    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    pipe = pipeline("video-text-to-text", model=loaded, processor=processor, num_frames=4)
    assert pipe(random_clip(0), text=QUESTION, max_new_tokens=1)[0]["num_clusters"] == 4
    # given as a folder, the `custom_pipelines` of its config make transformers ask for remote code
    processor.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="trust_remote_code"):
        pipeline("video-text-to-text", model=str(tmp_path))
    pipe = pipeline(
        "video-text-to-text", model=str(tmp_path), num_frames=4, pipeline_class=vqtoken.VQTokenVideoTextToTextPipeline
    )
    assert pipe(random_clip(0), text=QUESTION, max_new_tokens=1)[0]["num_clusters"] == 4


def test_remote_code_pipeline_without_the_package(build_model, tmp_path, clip_file):
    folder = tmp_path / "vqtoken-tiny"
    model, processor = build_model(**SETTINGS)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    file_frames = load_video(clip_file, num_frames=4).frames
    expected = {
        "array": greedy_answer(model, processor, random_clip(0)),
        "file": greedy_answer(model, processor, file_frames),
    }
    from vqtoken.cache import encode_to_vqt

    [cached_file] = encode_to_vqt(model, processor, [clip_file], [tmp_path / "clip.vqt"], num_frames=4)
    expected["cached"] = vqtoken.VQTokenVideoTextToTextPipeline(model=model, processor=processor)(
        str(cached_file), text=QUESTION, **generation_kwargs(processor)
    )[0]["generated_text"]
    script = BLOCK_VQTOKEN + textwrap.dedent(
        f"""
        import json
        import numpy as np
        import torch
        from transformers import pipeline
        torch.set_num_threads(1)
        folder, path = {str(folder)!r}, {str(clip_file)!r}
        kwargs = json.loads({json.dumps(generation_kwargs(processor))!r})
        pipe = pipeline("video-text-to-text", model=folder, trust_remote_code=True, num_frames=4)
        assert type(pipe).__name__ == "VQTokenVideoTextToTextPipeline", type(pipe)
        assert not type(pipe).__module__.startswith("vqtoken."), type(pipe).__module__
        array = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
        chat = [{{"role": "user", "content": [{{"type": "video", "video": path}},
                                             {{"type": "text", "text": {QUESTION!r}}}]}}]
        single = pipe(array, text={QUESTION!r}, **kwargs)[0]
        with open(path, "rb") as handle:
            batch = pipe([path, handle, chat], text={QUESTION!r}, **kwargs)
        inferred = pipeline(model=folder, trust_remote_code=True, num_frames=4)  # the task comes from the config
        cached = pipe({str(cached_file)!r}, text={QUESTION!r}, **kwargs)[0]  # a .vqt file, read by the remote code
        print("RESULT" + json.dumps({{
            "cached": cached["generated_text"],
            "single": single["generated_text"],
            "k": single["num_clusters"],
            "batch": [answers[0]["generated_text"] for answers in batch],
            "inferred_task": inferred.task,
        }}))
        """
    )
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT"))
    report = json.loads(line[len("RESULT") :])
    assert report["single"] == expected["array"]
    assert 2 <= report["k"] <= 6
    assert report["batch"] == [expected["file"]] * 3
    assert report["inferred_task"] == "video-text-to-text"
    assert report["cached"] == expected["cached"] == expected["file"]


def test_image_text_to_text_pipeline_takes_video_frames_in_chat_messages(build_model, clip_file):
    """transformers' own pipeline passes chat videos to the processor; frame arrays work. Paths do not in 5.24: its
    video loader needs torchcodec (torchvision's `read_video` is gone) and cannot be pointed at PyAV."""
    model, processor = build_model(**SETTINGS)
    pipe = pipeline("image-text-to-text", model=model, processor=processor)
    array = random_clip(0)
    chat = [{"role": "user", "content": [{"type": "video", "video": array}, {"type": "text", "text": QUESTION}]}]
    generation = generation_kwargs(processor)
    result = pipe(
        text=chat, return_full_text=False, max_new_tokens=generation.pop("max_new_tokens"), generate_kwargs=generation
    )
    assert result[0]["generated_text"].strip() == greedy_answer(model, processor, array)
    try:
        import torchcodec  # noqa: F401
    except Exception:
        path_chat = [
            {
                "role": "user",
                "content": [{"type": "video", "path": str(clip_file)}, {"type": "text", "text": QUESTION}],
            }
        ]
        with pytest.raises(ImportError, match="torchcodec"):
            pipe(text=path_chat, max_new_tokens=1)


def test_pipeline_answers_cached_videos_like_the_videos_themselves(build_model, clip_file, tmp_path):
    from vqtoken.cache import encode_to_vqt

    model, processor = build_model(**SETTINGS)
    pipe = pipeline("video-text-to-text", model=model, processor=processor, num_frames=4)
    other = write_clip(tmp_path / "other.mp4", render_clip(ClipSpec((0, 0, 255), seed=5), 8, 32, 32), fps=8)
    cached = encode_to_vqt(
        model, processor, [clip_file, other], [tmp_path / "a.vqt", tmp_path / "b.vqt"], num_frames=4
    )
    kwargs = generation_kwargs(processor)
    fresh = pipe([str(clip_file), str(other)], text=[QUESTION, "which way does it move ?"], **kwargs)
    from_cache = pipe([str(path) for path in cached], text=[QUESTION, "which way does it move ?"], **kwargs)
    for fresh_result, cached_result in zip(fresh, from_cache):
        fresh_result, cached_result = fresh_result[0], cached_result[0]
        assert cached_result["generated_text"] == fresh_result["generated_text"]
        assert cached_result["num_clusters"] == fresh_result["num_clusters"]
        assert "vision" not in cached_result["timings"] and "load" in cached_result["timings"]
    with pytest.raises(ValueError, match="mixes .vqt files and videos"):
        pipe([str(cached[0]), str(clip_file)], text=QUESTION)
