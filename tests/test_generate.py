"""`generate` and the model's outputs follow the contract of every Transformers model (and of stock OneVision)."""

import pytest
import torch
from helpers import random_clip, stock_twin, video_prompt
from transformers import TextStreamer


ADAPTIVE = {"vqtoken_selection_method": "elbow", "vqtoken_min_clusters": 3, "vqtoken_max_clusters": 8}
QUESTIONS = ["what colour is the square ?", "how many objects are there ?"]


def batch_inputs(processor, clips, questions=QUESTIONS):
    prompts = [video_prompt(processor, question) for question in questions[: len(clips)]]
    return processor(text=prompts, videos=list(clips), return_tensors="pt", padding=True, padding_side="left")


@pytest.mark.parametrize("mode", ["attention", "centroids"])
@torch.no_grad()
def test_generate_returns_the_callers_prompt_then_the_new_tokens(build_model, mode):
    model, processor = build_model(vqtoken_mode=mode, **ADAPTIVE)
    clips = [random_clip(0), random_clip(1, num_frames=4)]
    inputs = batch_inputs(processor, clips)
    counts = [tokens.shape[0] for tokens in model.model.get_video_features(inputs.pixel_values_videos).pooler_output]
    assert counts[0] != 9 or counts[1] != 9  # adaptive K: shorter than the processor's placeholder runs

    output = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert torch.equal(output[:, : inputs.input_ids.shape[1]], inputs.input_ids)
    assert output.shape[1] == inputs.input_ids.shape[1] + 5
    as_dict = model.generate(**inputs, max_new_tokens=5, do_sample=False, return_dict_in_generate=True)
    assert torch.equal(as_dict.sequences, output)

    for row, clip in enumerate(clips):
        alone = batch_inputs(processor, [clip], [QUESTIONS[row]])
        alone_output = model.generate(**alone, max_new_tokens=5, do_sample=False)
        assert torch.equal(alone_output[:, : alone.input_ids.shape[1]], alone.input_ids)
        assert torch.equal(alone_output[0, alone.input_ids.shape[1] :], output[row, inputs.input_ids.shape[1] :])


@torch.no_grad()
def test_generate_idioms_beam_search_samples_and_streamer(build_model, capsys):
    model, processor = build_model(**ADAPTIVE)
    clips = [random_clip(2), random_clip(3)]
    inputs = batch_inputs(processor, clips)
    length = inputs.input_ids.shape[1]

    beams = model.generate(**inputs, max_new_tokens=4, num_beams=3, num_return_sequences=2, do_sample=False)
    assert beams.shape[0] == 4
    assert torch.equal(beams[:, :length], inputs.input_ids.repeat_interleave(2, dim=0))
    for row, clip in enumerate(clips):
        alone = batch_inputs(processor, [clip], [QUESTIONS[row]])
        alone_beams = model.generate(**alone, max_new_tokens=4, num_beams=3, num_return_sequences=2, do_sample=False)
        assert torch.equal(alone_beams[:, alone.input_ids.shape[1] :], beams[2 * row : 2 * row + 2, length:])

    torch.manual_seed(0)
    samples = model.generate(**inputs, max_new_tokens=4, do_sample=True, num_return_sequences=3)
    assert samples.shape == (6, length + 4)
    assert torch.equal(samples[:, :length], inputs.input_ids.repeat_interleave(3, dim=0))

    one = batch_inputs(processor, clips[:1])
    capsys.readouterr()
    streamed = model.generate(
        **one, max_new_tokens=4, do_sample=False, streamer=TextStreamer(processor.tokenizer, skip_prompt=True)
    )
    printed = capsys.readouterr().out
    new_text = processor.tokenizer.decode(streamed[0, one.input_ids.shape[1] :])
    assert printed.strip() == new_text.strip()


@torch.no_grad()
def test_generate_from_inputs_embeds(build_model):
    model, processor = build_model(vqtoken_max_clusters=5)
    inputs = batch_inputs(processor, [random_clip(4)])
    embeds = model.get_input_embeddings()(inputs.input_ids)
    from_ids = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    from_embeds = model.generate(
        inputs_embeds=embeds,
        attention_mask=inputs.attention_mask,
        pixel_values_videos=inputs.pixel_values_videos,
        max_new_tokens=4,
        do_sample=False,
    )
    assert torch.equal(from_embeds, from_ids[:, inputs.input_ids.shape[1] :])

    adaptive, adaptive_processor = build_model(**ADAPTIVE)
    inputs = batch_inputs(adaptive_processor, [random_clip(4)])
    embeds = adaptive.get_input_embeddings()(inputs.input_ids)
    with pytest.raises(ValueError, match="placeholder embeddings but the videos produced"):
        adaptive.generate(inputs_embeds=embeds, pixel_values_videos=inputs.pixel_values_videos, max_new_tokens=2)


@torch.no_grad()
def test_video_features_follow_stocks_output_contract(build_model):
    model, processor = build_model(vqtoken_mode="centroids", vqtoken_max_clusters=5)
    stock = stock_twin(model)
    inputs = batch_inputs(processor, [random_clip(5), random_clip(6)])
    pixels = inputs.pixel_values_videos
    for kwargs in ({}, {"output_hidden_states": True}, {"output_attentions": True}):
        ours = model.model.get_video_features(pixels, **kwargs)
        reference = stock.model.get_video_features(pixels, **kwargs)
        assert list(ours.keys())[: len(reference)] == list(reference.keys())
        assert list(ours.keys())[len(reference) :] == ["codebooks", "index_maps", "num_clusters"]
        assert torch.equal(ours.last_hidden_state, reference.last_hidden_state)
        for mine, theirs in zip(ours.hidden_states, reference.hidden_states, strict=True):
            assert (mine is None and theirs is None) or torch.equal(mine, theirs)
        assert (ours.attentions is None) == (reference.attentions is None)
        assert [tokens.shape for tokens in ours.pooler_output] == [(6, 32), (6, 32)]

    as_tuple = model.model.get_video_features(pixels, return_dict=False)
    reference_tuple = stock.model.get_video_features(pixels, return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == len(reference_tuple) + 3
    assert torch.equal(as_tuple[0], reference_tuple[0])
    assert all(
        torch.equal(a, b)
        for a, b in zip(as_tuple[len(reference_tuple) - 1], model.model.get_video_features(pixels).pooler_output)
    )

    outputs = model(**inputs)
    if hasattr(outputs, "video_outputs"):  # transformers >= 5.24
        per_video = outputs.video_outputs.pooler_output
        assert [int(k) for k in outputs.video_outputs.num_clusters] == [5, 5]
    else:  # transformers < 5.24 returns the video tokens as `video_hidden_states`
        per_video = outputs.video_hidden_states
    assert isinstance(per_video, list) and [tokens.shape for tokens in per_video] == [(6, 32), (6, 32)]
    assert torch.equal(model(**inputs, return_dict=False)[0], outputs.logits)
