import pytest

from vqtoken import VQTokenLlavaOnevisionConfig
from vqtoken.tiny import tiny_config


def test_defaults_match_the_released_runtime():
    config = VQTokenLlavaOnevisionConfig()
    assert config.model_type == "vqtoken_llava_onevision"
    assert config.vqtoken_mode == "attention"
    assert config.vqtoken_selection_method == "fixed"
    assert (config.vqtoken_min_clusters, config.vqtoken_max_clusters) == (12, 32)
    assert config.vqtoken_spatial_pool is False
    assert (config.vqtoken_max_iterations, config.vqtoken_tolerance) == (100, 1e-4)
    assert (config.vqtoken_attention_heads, config.vqtoken_attention_intermediate_size) == (8, 2048)
    # SigLIP 384/14: 27 x 27 patches per frame, 14 x 14 after the stock 2x2 pooling
    assert config.vqtoken_tokens_per_frame == 729
    assert VQTokenLlavaOnevisionConfig(vqtoken_spatial_pool=True).vqtoken_tokens_per_frame == 196


@pytest.mark.parametrize(
    "field, value",
    [
        ("vqtoken_mode", "pooling"),
        ("vqtoken_selection_method", "gap"),
        ("vqtoken_kmeans_backend", "faiss"),
        ("vqtoken_min_clusters", 0),
        ("vqtoken_max_clusters", -3),
        ("vqtoken_max_iterations", 0),
        ("vqtoken_tolerance", -1.0),
        ("vqtoken_seed", -1),
        ("vqtoken_attention_heads", 0),
        ("vqtoken_attention_dropout", 1.0),
        ("vqtoken_attention_intermediate_size", 0),
    ],
)
def test_bad_values_raise_value_error_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        VQTokenLlavaOnevisionConfig(**{field: value})


def test_cross_field_checks():
    with pytest.raises(ValueError, match="vqtoken_min_clusters"):
        VQTokenLlavaOnevisionConfig(vqtoken_selection_method="elbow", vqtoken_min_clusters=20, vqtoken_max_clusters=16)
    # `fixed` ignores the lower bound
    assert VQTokenLlavaOnevisionConfig(vqtoken_max_clusters=8).vqtoken_max_clusters == 8
    with pytest.raises(ValueError, match="three candidate"):
        VQTokenLlavaOnevisionConfig(vqtoken_selection_method="elbow", vqtoken_min_clusters=12, vqtoken_max_clusters=13)
    with pytest.raises(ValueError, match="vqtoken_attention_heads"):
        VQTokenLlavaOnevisionConfig(vqtoken_attention_heads=7)  # 896 is not a multiple of 7


def test_round_trip_keeps_every_field(tmp_path, tokenizer):
    config = tiny_config(tokenizer, vqtoken_mode="centroids", vqtoken_selection_method="silhouette", vqtoken_seed=7)
    config.save_pretrained(tmp_path)
    loaded = VQTokenLlavaOnevisionConfig.from_pretrained(tmp_path)
    for name in ("vqtoken_mode", "vqtoken_selection_method", "vqtoken_seed", "vqtoken_max_clusters"):
        assert getattr(loaded, name) == getattr(config, name)
    assert loaded.vision_config.image_size == 32
    assert loaded.text_config.hidden_size == 32
