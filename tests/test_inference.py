import json
import subprocess
import sys

import torch
from helpers import random_clip

from vqtoken.inference import ask_video, ask_videos, video_prompt


def test_ask_reports_token_counts_and_every_stage(build_model):
    model, processor = build_model(vqtoken_mode="attention", vqtoken_max_clusters=5)
    result = ask_video(
        model,
        processor,
        random_clip(0, num_frames=4),
        "what colour is the square ?",
        num_frames=4,
        max_new_tokens=3,
        min_new_tokens=3,
    )
    assert result.num_frames == 4
    assert result.visual_tokens_stock == 4 * 4 + 1  # 4 x 4 patches pooled to 2 x 2, plus the newline
    assert result.visual_tokens_clustered == 4 * 16
    assert result.visual_tokens == max(4, 5) + 1 and result.num_clusters == 5
    assert list(result.timings) == ["decode", "preprocess", "vision", "clustering", "prefill", "generation"]
    assert all(seconds >= 0 for seconds in result.timings.values())
    # the same greedy answer as plain generate
    inputs = processor(
        text=[video_prompt(processor, "what colour is the square ?")], videos=[random_clip(0)], return_tensors="pt"
    )
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert result.answer == processor.decode(output[0, -3:], skip_special_tokens=True).strip()


def test_batched_ask_matches_asking_alone(build_model):
    model, processor = build_model(
        vqtoken_mode="centroids", vqtoken_selection_method="silhouette", vqtoken_min_clusters=2, vqtoken_max_clusters=8
    )
    clips = [random_clip(1), random_clip(2)]
    questions = ["what colour is the square ?", "how many objects are there ?"]
    batch = ask_videos(model, processor, clips, questions, num_frames=4, max_new_tokens=4, min_new_tokens=4)
    for clip, question, batched in zip(clips, questions, batch):
        alone = ask_video(model, processor, clip, question, num_frames=4, max_new_tokens=4, min_new_tokens=4)
        assert (alone.answer, alone.num_clusters, alone.visual_tokens) == (
            batched.answer,
            batched.num_clusters,
            batched.visual_tokens,
        )


def test_demo_command_runs_offline_and_labels_random_weights():
    # the built-in default is now a small model trained on synthetic clips: it must answer the demo question right
    from vqtoken.demo import DEMO_EXPECTED_ANSWER

    result = subprocess.run(
        [sys.executable, "-m", "vqtoken", "demo", "--frames", "8", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["num_frames"] == 8
    assert report["visual_tokens_clustered"] == 8 * 64  # 64 px frames in 8 px patches
    assert 12 <= report["num_clusters"] <= 15
    assert report["visual_tokens"] == max(8, report["num_clusters"]) + 1 <= 16
    assert report["answer"].split()[0] == DEMO_EXPECTED_ANSWER
    text = subprocess.run(
        [sys.executable, "-m", "vqtoken", "demo", "--frames", "8"], capture_output=True, text=True, timeout=300
    )
    assert text.returncode == 0 and "->" in text.stdout and DEMO_EXPECTED_ANSWER in text.stdout


def test_mode_off_runs_the_vision_tower_once_per_question_and_answers_as_stock(build_model):
    from helpers import stock_twin

    model, processor = build_model(vqtoken_mode="off")
    calls = []
    model.model.vision_tower.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[0]))
    result = ask_video(
        model,
        processor,
        random_clip(3),
        "what colour is the square ?",
        num_frames=4,
        max_new_tokens=3,
        min_new_tokens=3,
    )
    assert calls == [4]  # one pass over the 4 frames
    assert result.visual_tokens == result.visual_tokens_stock == 4 * 4 + 1 and result.num_clusters is None
    inputs = processor(
        text=[video_prompt(processor, "what colour is the square ?")], videos=[random_clip(3)], return_tensors="pt"
    )
    with torch.no_grad():
        output = stock_twin(model).generate(**inputs, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert result.answer == processor.decode(output[0, -3:], skip_special_tokens=True).strip()


def test_frames_a_few_pixels_high_are_read_channels_last_everywhere(build_model, tmp_path):
    """A frame 3 pixels high cannot tell its layout by its shape: every path says `channels_last` explicitly."""
    import numpy as np

    from vqtoken.cache import encode_to_vqt
    from vqtoken.video_io import load_video
    from vqtoken.visualize import cluster_video

    model, processor = build_model(vqtoken_max_clusters=5)
    clip = np.random.default_rng(9).integers(0, 256, (4, 3, 40, 3), dtype=np.uint8)
    # channels-first frames (3, 3, 40) with the layout stated: an independent reference
    reference = processor.video_processor(
        videos=[torch.from_numpy(clip).permute(0, 3, 1, 2).contiguous()],
        return_tensors="pt",
        input_data_format="channels_first",
    ).pixel_values_videos[0]
    seen = []
    model.model.vision_tower.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    ask_video(model, processor, clip, "what colour is the square ?", num_frames=4, max_new_tokens=1)
    encode_to_vqt(model, processor, [clip], [tmp_path / "clip.vqt"], num_frames=4)
    cluster_video(model, processor, load_video(clip, num_frames=4))
    assert len(seen) == 3
    for pixels in seen:
        assert torch.equal(pixels, reference)


def test_questions_must_be_strings_and_prompts_must_fit_the_context(build_model):
    import pytest

    from vqtoken import VQTokenVideoTextToTextPipeline

    model, processor = build_model(vqtoken_mode="centroids", vqtoken_max_clusters=5)
    clip = random_clip(0)
    for question in (None, 3, ["what ?"]):
        with pytest.raises(TypeError, match="A question must be a string"):
            ask_video(model, processor, clip, question, num_frames=4)
    with pytest.raises((TypeError, ValueError), match="question"):
        VQTokenVideoTextToTextPipeline(model=model, processor=processor)(clip, text=None)

    prompt_length = len(processor(text=[video_prompt(processor, "what ?")], videos=[clip]).input_ids[0])
    model.config.text_config.max_position_embeddings = prompt_length + 2
    assert ask_video(model, processor, clip, "what ?", num_frames=4, max_new_tokens=2).answer is not None
    with pytest.raises(
        ValueError,
        match=rf"Prompt 0 holds {prompt_length} tokens .* {prompt_length + 3} in all, "
        rf"more than the model's context of {prompt_length + 2} tokens",
    ):
        ask_video(model, processor, clip, "what ?", num_frames=4, max_new_tokens=3)
