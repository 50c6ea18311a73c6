"""Loading: stock OneVision checkpoints as transformers saves them, missing weights, settings and frame counts."""

import pytest
import torch
from helpers import random_clip, stock_processor, stock_twin, video_prompt
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import LlavaOnevisionForConditionalGeneration

import vqtoken
from vqtoken.loading import load_model_and_processor


VQ_ATTENTION = r"model\.vq_attention\."


def save_stock_folder(model, processor, folder):
    """`model`'s weights saved by stock transformers as LLaVA-OneVision, with a stock processor."""
    stock = stock_twin(model)
    stock.save_pretrained(folder)
    stock_processor(processor).save_pretrained(folder)
    return stock


def text_and_video_inputs(processor, clip):
    text = processor(text=["what colour is the square ?"], return_tensors="pt")
    video = processor(text=[video_prompt(processor)], videos=[clip], return_tensors="pt")
    return text, video


@pytest.mark.allow_missing_keys(VQ_ATTENTION)
@torch.no_grad()
def test_stock_checkpoint_in_hub_layout_loads_every_tensor(build_model, tmp_path):
    model, processor = build_model(vqtoken_mode="off")
    stock = save_stock_folder(model, processor, tmp_path)
    with safe_open(tmp_path / "model.safetensors", "pt") as file:
        saved = set(file.keys())
    # the layout transformers writes for stock OneVision (and that the Hub checkpoints hold)
    assert any(key.startswith("language_model.model.") for key in saved)
    assert not any(key.startswith("model.") for key in saved)

    loaded, info = vqtoken.VQTokenLlavaOnevisionForConditionalGeneration.from_pretrained(
        tmp_path, config=model.config, output_loading_info=True
    )
    assert info["unexpected_keys"] == [] or not info["unexpected_keys"]
    assert sorted(info["missing_keys"]) == sorted(k for k in model.state_dict() if k.startswith("model.vq_attention."))
    assert len(info["missing_keys"]) == 20
    for name, tensor in stock.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name

    text, video = text_and_video_inputs(processor, random_clip(3))
    loaded.eval()
    assert torch.equal(loaded(**text).logits, stock(**text).logits)
    assert torch.equal(loaded(**video).logits, stock(**video).logits)


@pytest.mark.allow_missing_keys(VQ_ATTENTION)
@torch.no_grad()
def test_loader_and_training_start_from_a_stock_checkpoint(build_model, tmp_path):
    from vqtoken.training.config import ModelArgs
    from vqtoken.training.trainable import load_starting_model as load_for_training

    model, processor = build_model(vqtoken_mode="off")
    stock = save_stock_folder(model, processor, tmp_path)
    text, video = text_and_video_inputs(processor, random_clip(4))
    expected_text, expected_video = stock(**text).logits, stock(**video).logits

    loaded, loaded_processor = load_model_and_processor(tmp_path, vqtoken_mode="off", device="cpu")
    assert type(loaded_processor) is vqtoken.VQTokenLlavaOnevisionProcessor
    assert torch.equal(loaded(**text).logits, expected_text)
    assert torch.equal(loaded(**video).logits, expected_video)

    trainable, _ = load_for_training(ModelArgs(name_or_path=str(tmp_path), vqtoken={"vqtoken_mode": "off"}))
    trainable.eval()
    assert torch.equal(trainable(**text).logits, expected_text)
    assert torch.equal(trainable(**video).logits, expected_video)


@pytest.mark.allow_missing_keys(r"model\.(vision_tower|vq_attention)\.")
def test_weights_missing_from_a_checkpoint_start_as_stock_starts_them(build_model, tmp_path):
    model, _ = build_model()
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    kept = {k: v for k, v in weights.items() if ".vision_tower." not in k and ".vq_attention." not in k}
    save_file(kept, tmp_path / "model.safetensors", metadata={"format": "pt"})
    torch.manual_seed(7)
    ours = vqtoken.VQTokenLlavaOnevisionForConditionalGeneration.from_pretrained(tmp_path)
    torch.manual_seed(7)
    stock = LlavaOnevisionForConditionalGeneration.from_pretrained(tmp_path)
    tower = [name for name in stock.state_dict() if ".vision_tower." in name]
    assert len(tower) > 20
    for name in tower:
        assert torch.equal(ours.state_dict()[name], stock.state_dict()[name]), name


def test_gradient_checkpointing_flag_of_the_configuration_is_honoured(tokenizer):
    from vqtoken.tiny import tiny_config

    config = tiny_config(tokenizer)
    config.gradient_checkpointing = True
    model = vqtoken.VQTokenLlavaOnevisionForConditionalGeneration(config)
    layers = [module for module in model.modules() if hasattr(module, "gradient_checkpointing")]
    assert layers and all(module.gradient_checkpointing for module in layers)


def test_placeholder_counts_for_serving_engines(build_model):
    sizes = {"image_sizes": [(48, 48)], "video_sizes": [(4, 32, 32), (7, 32, 32)]}
    for mode in ("off", "centroids", "attention"):
        model, processor = build_model(vqtoken_mode=mode, vqtoken_max_clusters=5)
        counts = processor._get_num_multimodal_tokens(**sizes)
        stock_counts = stock_processor(processor)._get_num_multimodal_tokens(**sizes)
        expected = {"off": stock_counts.num_video_tokens, "centroids": [5 + 1, 5 + 1], "attention": [5 + 1, 7 + 1]}
        assert counts.num_video_tokens == expected[mode]
        assert counts.num_image_tokens == stock_counts.num_image_tokens


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"vqtoken_max_clusters": 0}, "`vqtoken_max_clusters` must be a positive integer"),
        ({"vqtoken_mode": "fast"}, "`vqtoken_mode` must be one of 'attention', 'centroids', 'off'"),
        (
            {"vqtoken_selection_method": "elbow", "vqtoken_min_clusters": 9, "vqtoken_max_clusters": 6},
            "must not exceed `vqtoken_max_clusters`",
        ),
        ({"vqtoken_max_cluster": 6}, "Did you mean `vqtoken_max_clusters`"),
        ({"vqtoken_mode": "centroid"}, "Did you mean 'centroids'"),
    ],
)
def test_bad_settings_are_refused_when_loading(build_model, tmp_path, settings, message):
    model, processor = build_model()
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=message):
        vqtoken.VQTokenLlavaOnevisionForConditionalGeneration.from_pretrained(tmp_path, **settings)
    with pytest.raises(ValueError, match=message):
        load_model_and_processor(tmp_path, device="cpu", **settings)


def test_a_misspelt_setting_in_a_saved_configuration_is_refused(build_model, tmp_path):
    import json

    model, _ = build_model()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["vqtoken_max_cluster"] = 4
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="Did you mean `vqtoken_max_clusters`"):
        vqtoken.VQTokenLlavaOnevisionConfig.from_pretrained(tmp_path)


def test_settings_changed_after_loading_are_checked_on_every_path(build_model, tmp_path):
    from vqtoken.cache import encode_to_vqt
    from vqtoken.inference import ask_video

    model, processor = build_model()
    with pytest.raises(ValueError, match="vqtoken_mode"):
        model.config.vqtoken_mode = "fast"
    assert model.config.vqtoken_mode == "attention"
    # each value allowed alone, the pair not: caught before any clustering
    model.config.vqtoken_selection_method = "elbow"
    model.config.vqtoken_min_clusters = 40
    clip = random_clip(0)
    inputs = processor(text=[video_prompt(processor)], videos=[clip], return_tensors="pt")
    frame_features = model.model.get_frame_features(inputs.pixel_values_videos)
    calls = [
        lambda: ask_video(model, processor, clip, "what colour ?"),
        lambda: model.model.quantize_frame_features(frame_features),
        lambda: model.encode_videos(inputs.pixel_values_videos),
        lambda: encode_to_vqt(model, processor, [clip], [tmp_path / "clip.vqt"], num_frames=4),
        lambda: model.generate(**inputs, max_new_tokens=2),
        lambda: vqtoken.VQTokenVideoTextToTextPipeline(model=model, processor=processor)(clip, text="what ?"),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="`vqtoken_min_clusters` \\(40\\) must not exceed"):
            call()
    assert not (tmp_path / "clip.vqt").exists()


def test_the_model_folder_sets_the_frame_count(build_model, tmp_path):
    from vqtoken.inference import ask_video

    model, processor = build_model()
    assert processor.default_num_frames == 32  # a folder that does not say: the release's count
    processor.video_processor.num_frames = 6
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded, loaded_processor = load_model_and_processor(tmp_path, device="cpu")
    assert loaded_processor.default_num_frames == 6
    assert (
        ask_video(loaded, loaded_processor, random_clip(1, num_frames=12), "what ?", max_new_tokens=1).num_frames == 6
    )
    assert load_model_and_processor(None)[1].default_num_frames == 8  # the built-in default was trained on 8


@pytest.mark.parametrize(
    "name",
    ["./no/such/folder", "no/such/folder", "~/no-such-folder", "/no/such/folder"],
)
def test_a_missing_local_folder_is_named_not_looked_up_on_the_hub(name):
    from vqtoken.loading import ModelLoadError

    with pytest.raises(ModelLoadError, match=f"^model folder not found: {name}$"):
        load_model_and_processor(name)


def test_local_paths_are_told_from_hub_ids(tmp_path):
    from vqtoken.files import looks_like_local_path

    (tmp_path / "org").mkdir()
    assert not looks_like_local_path("lmms-lab/llava-onevision-qwen2-0.5b-ov")
    assert not looks_like_local_path("gpt2")
    for local in ("./model", "../model", "/abs/model", "~/model", "a/b/c", "C:\\models\\vqtoken", str(tmp_path)):
        assert looks_like_local_path(local), local
