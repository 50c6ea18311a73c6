import pytest
import torch
from helpers import random_clip, stock_twin, video_prompt


def reference_frame_features(stock, pixel_values_videos):
    """Projected, unpooled frame features computed with the stock modules: `(videos, frames, tokens, dim)`."""
    videos, frames = pixel_values_videos.shape[:2]
    hidden = stock.model.vision_tower(pixel_values_videos.flatten(0, 1), output_hidden_states=True).hidden_states[-1]
    return stock.model.multi_modal_projector(hidden).unflatten(0, (videos, frames))


def logits_from_video_tokens(stock, input_ids, attention_mask, video_tokens, video_token_id):
    """Logits of the stock model when the placeholders are replaced by `video_tokens` by hand."""
    embeds = stock.get_input_embeddings()(input_ids).clone()
    positions = torch.nonzero(input_ids == video_token_id)
    assert len(positions) == len(video_tokens)
    for (row, column), token in zip(positions.tolist(), video_tokens):
        embeds[row, column] = token
    return stock(inputs_embeds=embeds, attention_mask=attention_mask).logits


def video_inputs(processor, clips, question="what colour is the square ?"):
    prompts = [video_prompt(processor, question) for _ in clips]
    return processor(text=prompts, videos=list(clips), return_tensors="pt", padding=True)


@torch.no_grad()
def test_off_mode_is_stock_onevision_bit_for_bit(build_model):
    model, processor = build_model(vqtoken_mode="off")
    stock = stock_twin(model)
    inputs = video_inputs(processor, [random_clip(0)])
    assert int((inputs.input_ids == model.config.video_token_id).sum()) == 4 * 4 + 1
    assert torch.equal(model(**inputs).logits, stock(**inputs).logits)


@torch.no_grad()
def test_images_follow_stock_onevision_in_every_mode(build_model):
    from PIL import Image

    image = Image.fromarray(random_clip(5, num_frames=1, size=48)[0])
    for mode in ("attention", "centroids"):
        model, processor = build_model(vqtoken_mode=mode)
        stock = stock_twin(model)
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "describe"}]}]
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
        inputs = processor(text=[prompt], images=[image], return_tensors="pt")
        assert torch.equal(model(**inputs).logits, stock(**inputs).logits)


@torch.no_grad()
def test_centroids_mode_feeds_the_codebook_and_the_newline(build_model):
    model, processor = build_model(vqtoken_mode="centroids", vqtoken_max_clusters=5)
    stock = stock_twin(model)
    inputs = video_inputs(processor, [random_clip(1)])
    assert int((inputs.input_ids == model.config.video_token_id).sum()) == 5 + 1

    output = model.model.get_video_features(inputs.pixel_values_videos)
    index_map = output.index_maps[0]
    assert index_map.shape == (4, 16) and int(output.num_clusters[0]) == 5

    features = reference_frame_features(stock, inputs.pixel_values_videos)[0].flatten(0, 1)
    unit = torch.nn.functional.normalize(features.double(), dim=-1)
    labels = index_map.flatten()
    codebook = torch.stack(
        [unit[labels == k].mean(0) if (labels == k).any() else unit.new_zeros(32) for k in range(5)]
    )
    torch.testing.assert_close(output.codebooks[0].double(), codebook, atol=1e-5, rtol=1e-5)
    # the index map is the cosine assignment of every token to that codebook
    assert torch.equal((unit @ codebook.T).argmax(-1), labels)
    # norms of means of unit vectors are below one, unlike the projector's scale
    assert bool((codebook.norm(dim=-1) < 1).all())

    expected_tokens = list(codebook.float()) + [stock.model.image_newline]
    expected = logits_from_video_tokens(
        stock, inputs.input_ids, inputs.attention_mask, expected_tokens, model.config.video_token_id
    )
    torch.testing.assert_close(model(**inputs).logits, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("num_frames, num_clusters", [(4, 6), (8, 3)])
@torch.no_grad()
def test_attention_mode_matches_torch_transformer_decoder_layer(build_model, num_frames, num_clusters):
    model, processor = build_model(vqtoken_mode="attention", vqtoken_max_clusters=num_clusters)
    stock = stock_twin(model)
    inputs = video_inputs(processor, [random_clip(2, num_frames=num_frames)])
    length = max(num_frames, num_clusters)
    assert int((inputs.input_ids == model.config.video_token_id).sum()) == length + 1

    output = model.model.get_video_features(inputs.pixel_values_videos)
    index_map, codebook = output.index_maps[0], output.codebooks[0]

    reference_layer = torch.nn.TransformerDecoderLayer(d_model=32, nhead=2, dim_feedforward=64, dropout=0.1).eval()
    reference_layer.load_state_dict(model.model.vq_attention.decoder_layer.state_dict())
    to_q_proj = torch.nn.Linear(16, 32)
    to_q_proj.load_state_dict(model.model.vq_attention.to_q_proj.state_dict())
    queries = to_q_proj(index_map.float())
    repeat = lambda rows: torch.cat([rows] * length)[:length]  # noqa: E731
    expected = reference_layer(repeat(queries), repeat(codebook))
    assert expected.shape == (length, 32)
    torch.testing.assert_close(output.pooler_output[0][:-1], expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(output.pooler_output[0][-1], stock.model.image_newline, atol=0, rtol=0)

    expected_logits = logits_from_video_tokens(
        stock, inputs.input_ids, inputs.attention_mask, list(output.pooler_output[0]), model.config.video_token_id
    )
    torch.testing.assert_close(model(**inputs).logits, expected_logits, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_spatial_pooling_clusters_the_pooled_grid(build_model):
    model, processor = build_model(vqtoken_mode="attention", vqtoken_spatial_pool=True, vqtoken_max_clusters=3)
    inputs = video_inputs(processor, [random_clip(3)])
    output = model.model.get_video_features(inputs.pixel_values_videos)
    assert output.index_maps[0].shape == (4, 4)  # 4 x 4 patches pooled to 2 x 2 per frame
    assert model.model.vq_attention.to_q_proj.in_features == 4
    assert model(**inputs).logits.shape[1] == inputs.input_ids.shape[1]


@torch.no_grad()
def test_same_video_gives_the_same_tokens_alone_and_in_a_batch(build_model):
    model, processor = build_model(
        vqtoken_mode="attention", vqtoken_selection_method="silhouette", vqtoken_min_clusters=2, vqtoken_max_clusters=6
    )
    clips = [random_clip(10), random_clip(11), random_clip(12)]
    batch = model.model.get_video_features(video_inputs(processor, clips).pixel_values_videos)
    again = model.model.get_video_features(video_inputs(processor, clips).pixel_values_videos)
    for video, clip in enumerate(clips):
        alone = model.model.get_video_features(video_inputs(processor, [clip]).pixel_values_videos)
        assert torch.equal(alone.index_maps[0], batch.index_maps[video])
        assert torch.equal(again.index_maps[video], batch.index_maps[video])
        torch.testing.assert_close(alone.pooler_output[0], batch.pooler_output[video], atol=1e-6, rtol=1e-6)


@torch.no_grad()
def test_batched_generate_with_different_k_matches_generating_alone(build_model):
    model, processor = build_model(
        vqtoken_mode="centroids",
        vqtoken_selection_method="elbow_corrected",
        vqtoken_min_clusters=2,
        vqtoken_max_clusters=8,
    )
    chosen = {}
    for seed in range(40):
        clip = random_clip(100 + seed)
        k = int(model.model.get_video_features(video_inputs(processor, [clip]).pixel_values_videos).num_clusters[0])
        chosen.setdefault(k, clip)
        if len(chosen) == 2:
            break
    assert len(chosen) == 2, "no two clips with different K were found"
    clips = list(chosen.values())
    questions = ["what colour is the square ?", "which way does it move ? answer"]
    alone = []
    for clip, question in zip(clips, questions):
        inputs = video_inputs(processor, [clip], question)
        output = model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False)
        alone.append(output[0, -6:])
    prompts = [video_prompt(processor, q) for q in questions]
    processor.tokenizer.padding_side = "left"
    batch_inputs = processor(text=prompts, videos=clips, return_tensors="pt", padding=True)
    batch = model.generate(**batch_inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    for row, generated in enumerate(alone):
        assert torch.equal(batch[row, -6:], generated)


@torch.no_grad()
def test_forward_with_a_wrong_placeholder_count_explains_what_to_do(build_model):
    model, processor = build_model(
        vqtoken_mode="centroids", vqtoken_selection_method="elbow", vqtoken_min_clusters=2, vqtoken_max_clusters=8
    )
    inputs = video_inputs(processor, [random_clip(4)])
    k = int(model.model.get_video_features(inputs.pixel_values_videos).num_clusters[0])
    assert k < 8
    with pytest.raises(ValueError, match="align_video_placeholders"):
        model(**inputs)
    output = model.model.get_video_features(inputs.pixel_values_videos)
    ids, mask, labels = model.align_video_placeholders(
        inputs.input_ids, inputs.attention_mask, [t.shape[0] for t in output.pooler_output], labels=inputs.input_ids
    )
    assert int((ids == model.config.video_token_id).sum()) == k + 1
    assert int((labels == -100).sum()) == k + 1
    assert (
        model(input_ids=ids, attention_mask=mask, pixel_values_videos=inputs.pixel_values_videos).logits.shape[1]
        == ids.shape[1]
    )


@torch.no_grad()
def test_non_finite_video_features_raise(build_model):
    model, processor = build_model(vqtoken_mode="centroids", vqtoken_max_clusters=3)
    inputs = video_inputs(processor, [random_clip(5), random_clip(6)])
    inputs["pixel_values_videos"][1, 2, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"video\(s\) \[1\]"):
        model(**inputs)
