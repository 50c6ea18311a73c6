"""
The vLLM plugin against independent references: our Transformers `generate` (same saved folder, greedy), vLLM's own
LLaVA-OneVision (mode "off"), the Transformers fingerprint of the weights. Needs vLLM: run in .venv-vllm with
scripts/test_vllm.sh; skipped elsewhere.
"""

import os

import pytest
import torch


pytest.importorskip("vllm")

from vllm_support import (  # noqa: E402
    answers,
    clip,
    engine,
    greedy,
    lively_model,
    prompt,
    save_folder,
    transformers_answer,
    video_placeholders,
)


pytestmark = pytest.mark.vllm

MAX_CLUSTERS = 6


def requests(processor, videos) -> list[dict]:
    return [{"prompt": prompt(processor), "multi_modal_data": {"video": video}} for video in videos]


def test_entry_point_registers_the_architecture_idempotently():
    from importlib.metadata import entry_points

    from vllm import ModelRegistry

    from vqtoken.vllm_plugin import ARCHITECTURE, register

    [entry_point] = [point for point in entry_points(group="vllm.general_plugins") if point.name == "vqtoken"]
    assert entry_point.value == "vqtoken.vllm_plugin:register"
    register()
    register()
    assert ARCHITECTURE in ModelRegistry.get_supported_archs()
    # registered by name: the class (and vLLM's model code) is imported only when an engine builds it
    registered = ModelRegistry.models[ARCHITECTURE]
    assert (registered.module_name, registered.class_name) == ("vqtoken.vllm_plugin.model", ARCHITECTURE)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_served_fingerprint_is_the_transformers_models(tokenizer, tmp_path, dtype):
    from vqtoken.cache import model_fingerprint
    from vqtoken.vllm_plugin.processing import served_model_fingerprint

    model, processor = lively_model(tokenizer)
    folder = save_folder(model, processor, tmp_path / "model")
    assert served_model_fingerprint(folder, dtype) == model_fingerprint(model.to(dtype))
    other, _ = lively_model(tokenizer, seed=1)
    assert model_fingerprint(other.to(dtype)) != served_model_fingerprint(folder, dtype)


@pytest.mark.parametrize("mode", ["attention", "centroids"])
def test_fixed_k_gives_the_tokens_of_transformers_generate(tokenizer, tmp_path, mode):
    model, processor = lively_model(tokenizer, vqtoken_mode=mode, vqtoken_max_clusters=MAX_CLUSTERS)
    folder = save_folder(model, processor, tmp_path / mode)
    # three videos in one call (vLLM batches them); 8 frames > K: VQ-Attention gives max(T, K) + 1 tokens
    videos = [clip(0), clip(1), clip(2, num_frames=8)]
    expected = [transformers_answer(model, processor, frames) for frames in videos]
    expected_counts = [
        model.encode_videos(processor.video_processor(videos=[frames], return_tensors="pt")["pixel_values_videos"])
        .pooler_output[0]
        .shape[0]
        for frames in videos
    ]
    assert len({tuple(answer) for answer in expected}) == len(videos), "the reference answers must differ by video"

    with engine(folder, limit_mm_per_prompt={"image": 0, "video": 1}) as llm:
        outputs = llm.generate(requests(processor, videos), greedy())
        alone = llm.generate(requests(processor, videos[:1]), greedy())

    assert answers(outputs) == expected
    assert answers(alone) == expected[:1]
    assert [video_placeholders(output, model.config.video_token_id) for output in outputs] == expected_counts
    assert expected_counts == ([MAX_CLUSTERS + 1] * 2 + [9] if mode == "attention" else [MAX_CLUSTERS + 1] * 3)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="two tensor-parallel CPU workers need two cores")
@pytest.mark.parametrize("mode", ["attention", "centroids"])
def test_tensor_parallel_gives_the_tokens_of_transformers_generate(tokenizer, tmp_path, monkeypatch, mode):
    """
    The text model and the vision tower split over two workers (vLLM's multiprocessing executor, gloo on CPUs); the
    clustering runs on each worker's gathered features and must give the same tokens as one Transformers process.
    """
    model, processor = lively_model(tokenizer, vqtoken_mode=mode, vqtoken_max_clusters=MAX_CLUSTERS)
    assert (
        model.config.text_config.num_key_value_heads % 2 == 0
        and model.config.vision_config.num_attention_heads % 2 == 0
    )
    folder = save_folder(model, processor, tmp_path / mode)
    videos = [clip(0), clip(1), clip(2, num_frames=8)]
    expected = [transformers_answer(model, processor, frames) for frames in videos]
    assert len({tuple(answer) for answer in expected}) == len(videos), "the reference answers must differ by video"
    # one core per worker: vLLM binds its CPU workers to NUMA nodes otherwise, and a one-node machine has too few
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "0|1")

    with engine(
        folder,
        tensor_parallel_size=2,
        distributed_executor_backend="mp",
        limit_mm_per_prompt={"image": 0, "video": 1},
    ) as llm:
        outputs = llm.generate(requests(processor, videos), greedy())

    assert answers(outputs) == expected


def test_mode_off_gives_the_tokens_of_vllm_onevision(tokenizer, tmp_path):
    from vqtoken.benchmarks.vllm_serving import save_stock_onevision_folder

    model, processor = lively_model(tokenizer, vqtoken_mode="off")
    folder = save_folder(model, processor, tmp_path / "off")
    stock_folder = save_stock_onevision_folder(folder, tmp_path / "stock")
    videos = [clip(3), clip(4)]
    with engine(folder, limit_mm_per_prompt={"image": 0, "video": 1}) as llm:
        ours = llm.generate(requests(processor, videos), greedy())
    with engine(stock_folder, limit_mm_per_prompt={"image": 0, "video": 1}) as llm:
        assert type(llm.llm_engine.model_config.hf_config).__name__ == "LlavaOnevisionConfig"
        stock = llm.generate(requests(processor, videos), greedy())

    assert answers(ours) == answers(stock)
    assert len({tuple(answer) for answer in answers(stock)}) == len(videos)
    # 4x4 patches pooled to 2x2 per frame, 4 frames, + newline
    assert [video_placeholders(output, model.config.video_token_id) for output in ours] == [17, 17]
    assert answers(ours) == [transformers_answer(model, processor, frames) for frames in videos]


ADAPTIVE = {
    "vqtoken_mode": "attention",
    "vqtoken_selection_method": "elbow",
    "vqtoken_min_clusters": 2,
    "vqtoken_max_clusters": 24,
}


def two_video_prompt(processor) -> str:
    content = [{"type": "video"}, {"type": "video"}, {"type": "text", "text": "are they the same ?"}]
    return processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)


def test_vqt_files_and_embeddings_give_the_tokens_of_transformers_generate(tokenizer, tmp_path):
    from vqtoken.cache import encode_to_vqt, load_cached_videos
    from vqtoken.vllm_plugin.vqt_inputs import video_input_from_vqt

    model, processor = lively_model(tokenizer, **ADAPTIVE)
    folder = save_folder(model, processor, tmp_path / "adaptive")
    videos = [clip(5), clip(6), clip(7)]
    paths = encode_to_vqt(model, processor, videos, [tmp_path / f"{index}.vqt" for index in range(3)], num_frames=4)
    encoded = [load_cached_videos(path, model) for path in paths]
    expected = [transformers_answer(model, processor, video_outputs=outputs) for outputs in encoded]
    counts = [outputs.pooler_output[0].shape[0] for outputs in encoded]
    assert len({tuple(answer) for answer in expected}) == len(videos)
    assert len(set(counts)) > 1, "adaptive K should give these videos different token counts"
    pair_expected = transformers_answer(
        model, processor, video_outputs=load_cached_videos(paths[:2], model), text=two_video_prompt(processor)
    )

    with engine(folder, enable_mm_embeds=True, limit_mm_per_prompt={"image": 0, "video": 0}) as llm:
        from_files = llm.generate(
            [
                {"prompt": prompt(processor), "multi_modal_data": {"video": video_input_from_vqt(path)}}
                for path in paths
            ],
            greedy(),
        )
        from_embeddings = llm.generate(
            [
                {"prompt": prompt(processor), "multi_modal_data": {"video": [outputs.pooler_output[0]]}}
                for outputs in encoded
            ],
            greedy(),
        )
        pair = llm.generate(
            {"prompt": two_video_prompt(processor), "multi_modal_data": {"video": video_input_from_vqt(paths[:2])}},
            greedy(),
        )

    assert answers(from_files) == expected
    assert answers(from_embeddings) == expected
    assert [video_placeholders(output, model.config.video_token_id) for output in from_files] == counts
    assert answers(pair) == [pair_expected]


def test_bad_videos_are_refused_per_request(tokenizer, tmp_path):
    from vllm.exceptions import VLLMValidationError

    from vqtoken.cache import encode_to_vqt
    from vqtoken.vllm_plugin.vqt_inputs import video_input_from_vqt

    model, processor = lively_model(tokenizer, **ADAPTIVE)
    folder = save_folder(model, processor, tmp_path / "adaptive")
    [good] = encode_to_vqt(model, processor, [clip(8)], [tmp_path / "good.vqt"], num_frames=4)
    other_model, _ = lively_model(tokenizer, seed=1, **ADAPTIVE)
    [foreign] = encode_to_vqt(other_model, processor, [clip(8)], [tmp_path / "foreign.vqt"], num_frames=4)
    other_settings, _ = lively_model(tokenizer, **{**ADAPTIVE, "vqtoken_seed": 3})
    [reseeded] = encode_to_vqt(other_settings, processor, [clip(8)], [tmp_path / "reseeded.vqt"], num_frames=4)
    truncated = good.read_bytes()[:-100]

    def request(video):
        return {"prompt": prompt(processor), "multi_modal_data": {"video": video}}

    with engine(folder, enable_mm_embeds=True, limit_mm_per_prompt={"image": 0, "video": 0}) as llm:
        refusals = {
            "model_fingerprint": video_input_from_vqt(foreign),
            "seed=3": video_input_from_vqt(reseeded),
            "not a readable .vqt file": video_input_from_vqt(truncated),
            "hidden dimension mismatch: got 100, but model expects 256": [torch.randn(7, 100)],
            "At most 0 video": clip(8),
        }
        for message, video in refusals.items():
            with pytest.raises((ValueError, VLLMValidationError), match=message):
                llm.generate(request(video), greedy())
        # the engine keeps serving
        [output] = llm.generate(request(video_input_from_vqt(good)), greedy())
    assert output.outputs[0].token_ids


def test_adaptive_k_with_frames_fails_at_startup_with_the_reason(tokenizer, tmp_path):
    model, processor = lively_model(tokenizer, **ADAPTIVE)
    folder = save_folder(model, processor, tmp_path / "adaptive")
    with pytest.raises(ValueError, match="vLLM fixes the number of a video's placeholder tokens before"):
        with engine(folder, limit_mm_per_prompt={"image": 0, "video": 1}):
            pass
