"""
The vLLM plugin against independent references: our Transformers `generate` (same saved folder, greedy), vLLM's own
LLaVA-OneVision (mode "off"), the Transformers fingerprint of the weights. Needs vLLM: run in .venv-vllm with
scripts/test_vllm.sh; skipped elsewhere.
"""

import pytest
import torch

from vllm_support import (
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


vllm = pytest.importorskip("vllm")
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
