"""Conversion of a tiny checkpoint in the released layout, its verification, and publishing (no network)."""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from helpers import random_clip, video_prompt
from released_checkpoint import (
    PINPOINTS,
    TEXT,
    TINY_TOWER,
    VISION,
    VQ_FEED_FORWARD,
    released_config,
    released_tensors,
    write_llava_hf_processor,
    write_released_checkpoint,
    write_vision_config,
)
from transformers import (
    AutoModelForImageTextToText,
    AutoProcessor,
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
)

import vqtoken  # noqa: F401  (registers the Auto classes for the in-process checks)
from vqtoken.commands import main as vqtoken_main
from vqtoken.conversion.checkpoint import read_checkpoint
from vqtoken.conversion.convert import convert_checkpoint
from vqtoken.conversion.report import ConversionError, file_manifest
from vqtoken.publish import PublishError, push_to_hub


torch.set_num_threads(1)
BLOCKED = ("vqtoken", "triton")


@pytest.fixture(scope="module")
def released(tmp_path_factory, tokenizer):
    """The tiny released checkpoint (two safetensors shards + index), the tower's config and a llava-hf processor."""
    root = tmp_path_factory.mktemp("released")
    tensors = released_tensors(len(tokenizer))
    return {
        "root": root,
        "tokenizer": tokenizer,
        "tensors": tensors,
        "source": write_released_checkpoint(root / "source", tokenizer, tensors),
        "vision_config": write_vision_config(root / "siglip_tiny.json"),
        "processor": write_llava_hf_processor(root / "processor", tokenizer),
    }


def convert(released, output, **kwargs):
    checkpoint = str(kwargs.pop("checkpoint", released["source"]))
    settings = {"processor": str(released["processor"]), "vision_config": str(released["vision_config"])}
    settings.update(kwargs)
    return convert_checkpoint(checkpoint, output, **settings)


@pytest.fixture(scope="module")
def converted(released):
    output = released["root"] / "converted"
    report = convert(
        released,
        output,
        vqtoken_settings={"vqtoken_mode": "attention", "vqtoken_max_clusters": 5},
        max_shard_size="100KB",
        repo_id="test-org/vqtoken-tiny",
        verify_block_modules=BLOCKED,
    )
    return output, report


# ------------------------------------------------------------------------------------------------ independent model


def stock_state_dict(tensors):
    """The released tensors under stock llava-hf OneVision names, mapped independently of the converter."""
    renames = [
        ("model.vision_tower.vision_tower.vision_model.", "model.vision_tower."),
        ("model.mm_projector.0.", "model.multi_modal_projector.linear_1."),
        ("model.mm_projector.2.", "model.multi_modal_projector.linear_2."),
        ("model.embed_tokens.", "model.language_model.embed_tokens."),
        ("model.layers.", "model.language_model.layers."),
        ("model.norm.", "model.language_model.norm."),
    ]
    state = {}
    for key, tensor in tensors.items():
        if key.startswith("model.cross_attention."):
            continue
        for old, new in renames:
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        state[key] = tensor
    state["lm_head.weight"] = tensors["model.embed_tokens.weight"]
    return state


def stock_onevision(released):
    tokenizer = released["tokenizer"]
    vision = {k: v for k, v in VISION.items() if k not in ("kept_layers", "num_hidden_layers")}
    config = LlavaOnevisionConfig(
        vision_config={
            "model_type": "siglip_vision_model",
            **vision,
            "num_hidden_layers": VISION["kept_layers"],
            "vision_use_head": False,
        },
        text_config={
            "model_type": "qwen2",
            **TEXT,
            "vocab_size": len(tokenizer),
            "rope_theta": 1e6,
            "rms_norm_eps": 1e-6,
            "max_position_embeddings": 4096,
            "tie_word_embeddings": True,
        },
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        image_grid_pinpoints=PINPOINTS,
        tie_word_embeddings=True,
    )
    stock = LlavaOnevisionForConditionalGeneration(config).eval()
    result = stock.load_state_dict(stock_state_dict(released["tensors"]), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return stock


def load_converted(folder, mode, max_clusters=5):
    model = AutoModelForImageTextToText.from_pretrained(folder, vqtoken_mode=mode, vqtoken_max_clusters=max_clusters)
    processor = AutoProcessor.from_pretrained(folder)
    processor.vqtoken_mode, processor.vqtoken_max_clusters = mode, max_clusters
    return model.eval(), processor


def video_batch(processor, num_frames=4, seed=0):
    return processor(
        text=[video_prompt(processor)], videos=[random_clip(seed, num_frames=num_frames)], return_tensors="pt"
    )


def logits_with_video_tokens(stock, inputs, video_tokens):
    embeds = stock.get_input_embeddings()(inputs.input_ids).clone()
    positions = torch.nonzero(inputs.input_ids == stock.config.video_token_id)
    assert len(positions) == len(video_tokens)
    for (row, column), token in zip(positions.tolist(), video_tokens):
        embeds[row, column] = token
    return stock(inputs_embeds=embeds, attention_mask=inputs.attention_mask).logits


# ---------------------------------------------------------------------------------------------------------- the folder


def test_conversion_writes_a_verified_self_contained_folder(converted, released):
    folder, report = converted
    files = set(os.listdir(folder))
    assert {
        "config.json",
        "generation_config.json",
        "model.safetensors.index.json",
        "README.md",
        "conversion_report.json",
        "processor_config.json",
        "tokenizer.json",
        "chat_template.jinja",
        "configuration_vqtoken_llava_onevision.py",
        "modeling_vqtoken_llava_onevision.py",
        "processing_vqtoken_llava_onevision.py",
        "vqtoken_attention.py",
        "vqtoken_kmeans.py",
        "vqtoken_kmeans_triton.py",
    } <= files
    shards = sorted(name for name in files if name.endswith(".safetensors"))
    assert len(shards) > 1  # sharded above 100KB, with the index
    assert not [name for name in files if name.endswith(PICKLE)]
    assert not [p for p in folder.parent.iterdir() if ".partial-" in p.name]

    # every source tensor mapped, every model tensor compared after a clean remote-code reload
    assert report.source_tensors == report.tensors_mapped == len(released["tensors"]) == 88
    assert len([k for k in released["tensors"] if k.startswith("model.cross_attention.")]) == 20
    assert report.tied_embeddings and report.dtype == "float32"
    assert report.verification["status"] == "passed"
    assert report.verification["tensors_compared"] == report.verification["tensors_loaded"] == 89  # + tied lm_head
    assert report.verification["model_class"].startswith("transformers_modules.")
    assert report.verification["processor_class"].startswith("transformers_modules.")
    recorded = json.loads((folder / "conversion_report.json").read_text())
    assert recorded["files"] == file_manifest(folder)
    assert report.parameters == sum(t.numel() for t in released["tensors"].values())
    assert "sha256" in report.summary() and "88 of 88" in report.summary()

    config = json.loads((folder / "config.json").read_text())
    tokenizer = released["tokenizer"]
    source = released_config(tokenizer, len(tokenizer))
    assert config["vision_config"]["num_hidden_layers"] == VISION["kept_layers"]
    for name in ("hidden_size", "intermediate_size", "num_attention_heads", "patch_size", "image_size"):
        assert config["vision_config"][name] == VISION[name]
    for name in (
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "vocab_size",
        "rms_norm_eps",
        "eos_token_id",
        "bos_token_id",
    ):
        assert config["text_config"][name] == source[name], name
    assert config["text_config"]["rope_parameters"]["rope_theta"] == source["rope_theta"]
    assert config["image_grid_pinpoints"] == PINPOINTS
    assert config["image_token_index"] == tokenizer.convert_tokens_to_ids("<image>")
    assert config["video_token_index"] == tokenizer.convert_tokens_to_ids("<video>")
    assert config["vision_feature_layer"] == -1 and config["vision_feature_select_strategy"] == "full"
    assert config["vqtoken_mode"] == "attention" and config["vqtoken_max_clusters"] == 5
    assert config["vqtoken_attention_heads"] == 8
    assert config["vqtoken_attention_intermediate_size"] == VQ_FEED_FORWARD
    processor_config = json.loads((folder / "processor_config.json").read_text())
    assert processor_config["vqtoken_mode"] == "attention" and processor_config["vqtoken_max_clusters"] == 5
    assert processor_config["auto_map"]["AutoProcessor"].endswith("VQTokenLlavaOnevisionProcessor")

    card = (folder / "README.md").read_text()
    import yaml

    metadata = yaml.safe_load(card.split("---")[1])
    assert metadata["pipeline_tag"] == "video-text-to-text" and metadata["library_name"] == "transformers"
    for key in ("base_model", "license", "tags", "datasets", "widget"):
        assert metadata[key], key
    assert "trust_remote_code=True" in card and "import vqtoken" in card and "pipeline(" in card
    assert "test-org/vqtoken-tiny" in card and "57.5 %" in card and "## Limits" in card


PICKLE = (".bin", ".pt", ".pth", ".pkl")


@torch.no_grad()
def test_every_tensor_equals_the_source(converted, released):
    folder, _ = converted
    model = AutoModelForImageTextToText.from_pretrained(folder)
    state = model.state_dict()
    expected = stock_state_dict(released["tensors"])
    cross = "model.cross_attention."
    for key, tensor in released["tensors"].items():
        if key.startswith(cross + "to_q_proj."):
            expected["model.vq_attention.to_q_proj." + key.split(".")[-1]] = tensor
        elif key.startswith(cross):
            expected["model.vq_attention.decoder_layer." + key.split("layers.0.", 1)[1]] = tensor
    assert set(state) == set(expected)
    for key, tensor in expected.items():
        assert torch.equal(state[key], tensor), key


@torch.no_grad()
def test_off_mode_is_stock_onevision_on_the_source_weights(converted, released):
    from PIL import Image

    model, processor = load_converted(converted[0], "off")
    stock = stock_onevision(released)
    inputs = video_batch(processor)
    assert int((inputs.input_ids == model.config.video_token_id).sum()) == 4 * 4 + 1
    assert torch.equal(model(**inputs).logits, stock(**inputs).logits)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "describe"}]}]
    image = Image.fromarray(random_clip(5, num_frames=1, size=48)[0])
    image_inputs = processor(
        text=[processor.apply_chat_template(messages, add_generation_prompt=True)], images=[image], return_tensors="pt"
    )
    assert torch.equal(model(**image_inputs).logits, stock(**image_inputs).logits)


@torch.no_grad()
def test_centroids_mode_matches_a_reference_codebook(converted, released):
    model, processor = load_converted(converted[0], "centroids", max_clusters=5)
    stock = stock_onevision(released)
    inputs = video_batch(processor, seed=1)
    output = model.model.get_video_features(inputs.pixel_values_videos)
    labels = output.index_maps[0].flatten()
    hidden = stock.model.vision_tower(inputs.pixel_values_videos.flatten(0, 1), output_hidden_states=True)
    features = stock.model.multi_modal_projector(hidden.hidden_states[-1]).flatten(0, 1)
    unit = torch.nn.functional.normalize(features.double(), dim=-1)
    codebook = torch.stack(
        [unit[labels == k].mean(0) if (labels == k).any() else unit.new_zeros(unit.shape[1]) for k in range(5)]
    )
    torch.testing.assert_close(output.codebooks[0].double(), codebook, atol=1e-5, rtol=1e-5)
    assert torch.equal((unit @ codebook.T).argmax(-1), labels)
    expected = logits_with_video_tokens(
        stock, inputs, list(codebook.float()) + [released["tensors"]["model.image_newline"]]
    )
    torch.testing.assert_close(model(**inputs).logits, expected, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_attention_mode_matches_torch_decoder_layer_built_from_the_source_tensors(converted, released):
    model, processor = load_converted(converted[0], "attention", max_clusters=5)
    stock = stock_onevision(released)
    inputs = video_batch(processor, num_frames=4, seed=2)
    assert int((inputs.input_ids == model.config.video_token_id).sum()) == 5 + 1
    output = model.model.get_video_features(inputs.pixel_values_videos)
    index_map, codebook = output.index_maps[0], output.codebooks[0]

    tensors = released["tensors"]
    prefix = "model.cross_attention.transformer_decoder.layers.0."
    layer = torch.nn.TransformerDecoderLayer(d_model=TEXT["hidden_size"], nhead=8, dim_feedforward=VQ_FEED_FORWARD)
    layer.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}, strict=True)
    layer.eval()
    queries = torch.nn.functional.linear(
        index_map.float(),
        tensors["model.cross_attention.to_q_proj.weight"],
        tensors["model.cross_attention.to_q_proj.bias"],
    )
    length = max(queries.shape[0], codebook.shape[0])
    cycle = lambda rows: torch.cat([rows] * length)[:length]  # noqa: E731
    expected = layer(cycle(queries), cycle(codebook))
    torch.testing.assert_close(output.pooler_output[0][:-1], expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(output.pooler_output[0][-1], tensors["model.image_newline"])
    reference_logits = logits_with_video_tokens(stock, inputs, list(expected) + [tensors["model.image_newline"]])
    torch.testing.assert_close(model(**inputs).logits, reference_logits, atol=1e-5, rtol=1e-5)


def test_dtype_cast_and_pickle_source_read_with_weights_only(released, tmp_path):
    source = tmp_path / "pickled"
    source.mkdir()
    shutil.copy(released["source"] / "config.json", source / "config.json")
    torch.save(released["tensors"], source / "pytorch_model.bin")
    read, origin = read_checkpoint(source)
    assert set(read) == set(released["tensors"]) and set(origin.values()) == {"pytorch_model.bin"}
    settings = {
        "vqtoken_mode": "centroids",
        "vqtoken_selection_method": "elbow",
        "vqtoken_min_clusters": 2,
        "vqtoken_max_clusters": 6,
    }
    report = convert(
        released, tmp_path / "bf16", checkpoint=source, dtype="bfloat16", vqtoken_settings=settings, verify=False
    )
    assert report.dtype == "bfloat16" and report.verification == {"status": "skipped"}
    config = json.loads((tmp_path / "bf16" / "config.json").read_text())
    assert config["dtype"] == "bfloat16" and config["vqtoken_selection_method"] == "elbow"
    assert (config["vqtoken_min_clusters"], config["vqtoken_max_clusters"]) == (2, 6)
    written, _ = read_checkpoint(tmp_path / "bf16")
    assert not list((tmp_path / "bf16").glob("*.bin"))
    assert written["model.vq_attention.to_q_proj.weight"].dtype == torch.bfloat16
    assert torch.equal(
        written["model.language_model.embed_tokens.weight"],
        released["tensors"]["model.embed_tokens.weight"].to(torch.bfloat16),
    )
    assert "lm_head.weight" not in written  # tied


# ------------------------------------------------------------------------------------------------------ broken inputs


def _drop(tensors):
    tensors.pop("model.cross_attention.transformer_decoder.layers.0.norm2.bias")


def _extra(tensors):
    tensors["model.cross_attention.transformer_decoder.layers.1.norm1.weight"] = torch.ones(TEXT["hidden_size"])


def _wrong_shape(tensors):
    tensors["model.mm_projector.2.weight"] = torch.zeros(TEXT["hidden_size"], TEXT["hidden_size"] + 1)


def _wrong_tokens_per_frame(tensors):
    tensors["model.cross_attention.to_q_proj.weight"] = torch.zeros(TEXT["hidden_size"], 729)


def _untied_without_head(tensors):
    pass


@pytest.mark.parametrize(
    "edit, config_edit, message",
    [
        (_drop, None, r"left unfilled: \['model.vq_attention.decoder_layer.norm2.bias'\]"),
        (
            _extra,
            None,
            r"no place in the model: \['model.cross_attention.transformer_decoder.layers.1.norm1.weight'\]",
        ),
        (_wrong_shape, None, r"model.mm_projector.2.weight \[32, 33\] -> model.multi_modal_projector.linear_2.weight"),
        (_wrong_tokens_per_frame, None, r"to_q_proj.weight \[32, 729\] takes 729 tokens per frame.*gives 16"),
        (_untied_without_head, {"tie_word_embeddings": False}, r"no lm_head.weight"),
        (None, {"vocab_size": 4}, r"vocab_size 4 but model.embed_tokens.weight has"),
        (None, {"mm_projector_type": "linear"}, r"mlp2x_gelu"),
    ],
    ids=["missing", "extra", "shape", "to-q-proj", "untied", "vocab", "projector"],
)
def test_broken_checkpoints_fail_clearly_and_leave_nothing(released, tmp_path, edit, config_edit, message):
    tensors = dict(released["tensors"])
    if edit is not None:
        edit(tensors)
    config = released_config(released["tokenizer"], len(released["tokenizer"]))
    config.update(config_edit or {})
    source = write_released_checkpoint(tmp_path / "source", released["tokenizer"], tensors, config, shards=1)
    output = tmp_path / "out"
    with pytest.raises(ConversionError, match=message):
        convert(released, output, checkpoint=source)
    assert not output.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source"]


@pytest.mark.parametrize("model_type", ["llava", "qwen2"])
def test_every_spelling_of_the_llava_qwen_family_converts(released, tmp_path, model_type):
    config = released_config(released["tokenizer"], len(released["tokenizer"]), model_type=model_type)
    source = write_released_checkpoint(
        tmp_path / "source", released["tokenizer"], released["tensors"], config, shards=1
    )
    report = convert(released, tmp_path / "out", checkpoint=source, verify=False)
    assert report.tensors_mapped == len(released["tensors"]) and report.dropped_tensors == []


@pytest.mark.parametrize(
    "config_edit, message",
    [
        ({"architectures": ["LlavaForConditionalGeneration"]}, r"architectures \['LlavaForConditionalGeneration'\]"),
        ({"model_type": "llava_onevision"}, r"model_type 'llava_onevision'; a LLaVA-Qwen checkpoint says one of"),
        ({"model_type": "mistral"}, r"model_type 'mistral'"),
    ],
    ids=["architecture", "llava-hf", "other"],
)
def test_other_families_are_refused_with_the_reason(released, tmp_path, config_edit, message):
    config = {**released_config(released["tokenizer"], len(released["tokenizer"])), **config_edit}
    source = write_released_checkpoint(
        tmp_path / "source", released["tokenizer"], released["tensors"], config, shards=1
    )
    with pytest.raises(ConversionError, match=message):
        convert(released, tmp_path / "out", checkpoint=source)
    assert not (tmp_path / "out").exists()


def test_a_siglip_head_is_dropped_and_reported(released, tmp_path):
    tensors = dict(released["tensors"])
    width = VISION["hidden_size"]
    head = {
        "model.vision_tower.vision_tower.vision_model.head.probe": torch.randn(1, 1, width),
        "model.vision_tower.vision_tower.vision_model.head.attention.in_proj_weight": torch.randn(3 * width, width),
        "model.vision_tower.vision_tower.vision_model.head.mlp.fc1.weight": torch.randn(2 * width, width),
    }
    source = write_released_checkpoint(tmp_path / "source", released["tokenizer"], {**tensors, **head}, shards=1)
    output = tmp_path / "out"
    report = convert(released, output, checkpoint=source, verify_block_modules=BLOCKED)
    assert report.dropped_tensors == sorted(head)
    assert report.tensors_mapped == len(tensors)
    written = json.loads((output / "conversion_report.json").read_text())
    assert written["dropped_tensors"] == sorted(head)
    assert "tensors dropped   3" in report.summary()


def test_truncated_safetensors_file_fails_clearly(released, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(released["source"], source)
    shard = sorted(source.glob("*.safetensors"))[1]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(ConversionError, match=rf"Cannot read safetensors file .*{shard.name}"):
        convert(released, tmp_path / "out", checkpoint=source)
    assert not (tmp_path / "out").exists()


def test_unknown_tower_without_vision_config_fails_clearly(released, tmp_path, capsys):
    output = tmp_path / "out"
    status = vqtoken_main(
        [
            "convert",
            "--checkpoint",
            str(released["source"]),
            "--output",
            str(output),
            "--processor",
            str(released["processor"]),
        ]
    )
    assert status == 1
    assert f"vision tower {TINY_TOWER!r} is not one whose sizes the converter knows" in capsys.readouterr().err
    assert "--vision-config" in str(
        pytest.raises(ConversionError, convert, released, output, vision_config=None).value
    )
    assert not output.exists()


def test_known_tower_layer_count_is_checked(released, tmp_path):
    config = released_config(
        released["tokenizer"], len(released["tokenizer"]), tower="google/siglip-so400m-patch14-384"
    )
    source = write_released_checkpoint(tmp_path / "source", released["tokenizer"], released["tensors"], config, 1)
    with pytest.raises(ConversionError, match="keeps 26 encoder layers, the checkpoint holds 2"):
        convert(released, tmp_path / "out", checkpoint=source, vision_config=None)
    assert not (tmp_path / "out").exists()


def test_processor_tokens_must_fit_the_embedding_matrix(released, tmp_path):
    tensors = dict(released["tensors"])
    rows = released["tokenizer"].convert_tokens_to_ids("<video>")  # <video> falls just outside
    tensors["model.embed_tokens.weight"] = tensors["model.embed_tokens.weight"][:rows]
    config = released_config(released["tokenizer"], rows)
    source = write_released_checkpoint(tmp_path / "source", released["tokenizer"], tensors, config, shards=1)
    with pytest.raises(
        ConversionError, match=rf"'<video>' id {rows} does not fit the embedding matrix \({rows} rows\)"
    ):
        convert(released, tmp_path / "out", checkpoint=source)
    assert not (tmp_path / "out").exists()


def test_existing_output_is_not_overwritten_by_default(released, converted):
    with pytest.raises(ConversionError, match="already exists"):
        convert(released, converted[0])


def test_hub_ids_go_through_snapshot_download_and_folders_do_not(monkeypatch, released, tmp_path):
    import huggingface_hub

    calls = []

    def fake_snapshot_download(repo_id, revision=None, token=None, allow_patterns=None):
        calls.append((repo_id, revision, token))
        return str(released["source"] if repo_id == "haichaozhang/VQ-Token-llava-ov-0.5b" else released["processor"])

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    with pytest.raises(ConversionError) as error:
        convert_checkpoint(
            "haichaozhang/VQ-Token-llava-ov-0.5b",
            tmp_path / "out",
            revision="abc123",
            processor="llava-hf/llava-onevision-qwen2-0.5b-ov-hf",
        )
    assert "is not one whose sizes the converter knows" in str(error.value)
    assert calls == [("haichaozhang/VQ-Token-llava-ov-0.5b", "abc123", None)]
    calls.clear()
    convert(released, tmp_path / "local", verify=False)
    assert calls == []


# ---------------------------------------------------------------------------------------------------------- publishing


class RecordingHub:
    """Stands in for `huggingface_hub.HfApi` (the network boundary): records the repository and the commit."""

    def __init__(self):
        self.clients, self.repos, self.commits = [], [], []

    def __call__(self, token=None):  # constructing the client
        self.clients.append(token)
        return self

    def create_repo(self, repo_id, **kwargs):
        self.repos.append({"repo_id": repo_id, **kwargs})
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, *, folder_path, repo_id, commit_message, allow_patterns=None, **kwargs):
        from fnmatch import fnmatch

        folder = Path(folder_path)
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        sent = {
            name: data
            for name, data in files.items()
            if allow_patterns is None or any(fnmatch(name, pattern) for pattern in allow_patterns)
        }
        self.commits.append({"repo_id": repo_id, "message": commit_message, "files": sent, **kwargs})

        class Info:
            commit_url = f"https://huggingface.co/{repo_id}/commit/0123"

        return Info()


@pytest.fixture
def hub(monkeypatch):
    import vqtoken.publish

    recording = RecordingHub()
    monkeypatch.setattr(vqtoken.publish, "HfApi", recording)
    return recording


def test_push_is_a_dry_run_by_default(converted, hub, capsys):
    folder, _ = converted
    status = vqtoken_main(["push", str(folder), "--repo-id", "test-org/vqtoken-tiny"])
    assert status == 0
    printed = capsys.readouterr().out
    for path in folder.iterdir():
        assert path.name in printed and f"{path.stat().st_size:,d}" in printed
    assert "nothing was sent" in printed
    assert hub.clients == [] and hub.repos == [] and hub.commits == []


def test_push_with_yes_creates_the_repo_and_commits_every_file(converted, hub):
    folder, _ = converted
    plan = push_to_hub(folder, "test-org/vqtoken-tiny", yes=True, private=True, reload=False)
    assert plan.uploaded and plan.commit_url.endswith("/commit/0123")
    assert hub.repos == [{"repo_id": "test-org/vqtoken-tiny", "repo_type": "model", "private": True, "exist_ok": True}]
    (commit,) = hub.commits
    assert commit["repo_id"] == "test-org/vqtoken-tiny" and commit["message"] == plan.commit_message
    assert set(commit["files"]) == {p.name for p in folder.iterdir()}
    for name, content in commit["files"].items():
        assert content == (folder / name).read_bytes()
    assert commit["repo_type"] == "model" and hub.clients == [None]


def test_push_refuses_pickles_and_folders_that_fail_verification(converted, hub, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(converted[0], folder)
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(PublishError, match=r"pickle files: \['pytorch_model.bin'\]"):
        push_to_hub(folder, "test-org/x", yes=True, reload=False)
    (folder / "pytorch_model.bin").unlink()

    shard = sorted(folder.glob("model-*.safetensors"))[0]
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(PublishError, match=rf"changed or missing \['{shard.name}'\]"):
        push_to_hub(folder, "test-org/x", yes=True, reload=False)

    report = json.loads((folder / "conversion_report.json").read_text())
    (folder / "conversion_report.json").unlink()
    with pytest.raises(PublishError, match="no conversion_report.json"):
        push_to_hub(folder, "test-org/x", reload=False)
    report["verification"] = {"status": "skipped"}
    (folder / "conversion_report.json").write_text(json.dumps(report))
    with pytest.raises(PublishError, match="was not verified"):
        push_to_hub(folder, "test-org/x", reload=False)
    assert hub.clients == [] and hub.repos == [] and hub.commits == []
