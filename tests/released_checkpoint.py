"""
A tiny checkpoint in the released VQToken layout (LLaVA-NeXT names, LLaVA-style config.json that only names its
vision tower), a tiny llava-hf style OneVision processor folder and the SigLIP config of the tiny tower.

Sizes: SigLIP hidden 24, 3 layers of which 2 are kept, 32 px frames with 8 px patches (16 tokens per frame); Qwen2
hidden 32, 2 layers; VQ-Attention feed-forward 64 (8 heads as released). As in the release, the tower has no
`head.*` tensors (LLaVA-NeXT replaces the SigLIP head by an identity) but keeps `post_layernorm`.
"""

import json
from pathlib import Path

import torch
from safetensors.torch import save_file


TINY_TOWER = "tiny-org/siglip-tiny-patch8-32"
VISION = {
    "hidden_size": 24,
    "intermediate_size": 48,
    "num_attention_heads": 2,
    "patch_size": 8,
    "image_size": 32,
    "num_hidden_layers": 3,
    "kept_layers": 2,
}
TEXT = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}
VQ_FEED_FORWARD = 64
PINPOINTS = [[32, 32], [32, 64], [64, 32]]


def released_tensors(vocab_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Every key family of the released layout, with random values (norm weights near one)."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {}

    def add(name, *shape, scale=0.05, around=0.0):
        tensors[name] = around + scale * torch.randn(*shape, generator=generator)

    v, t = VISION["hidden_size"], TEXT["hidden_size"]
    tokens = (VISION["image_size"] // VISION["patch_size"]) ** 2
    vision = "model.vision_tower.vision_tower.vision_model."
    add(vision + "embeddings.patch_embedding.weight", v, 3, VISION["patch_size"], VISION["patch_size"])
    add(vision + "embeddings.patch_embedding.bias", v)
    add(vision + "embeddings.position_embedding.weight", tokens, v)
    for layer in range(VISION["kept_layers"]):
        prefix = f"{vision}encoder.layers.{layer}."
        for norm in ("layer_norm1", "layer_norm2"):
            add(prefix + norm + ".weight", v, around=1.0)
            add(prefix + norm + ".bias", v)
        for projection in ("q_proj", "k_proj", "v_proj", "out_proj"):
            add(prefix + f"self_attn.{projection}.weight", v, v, scale=0.2)
            add(prefix + f"self_attn.{projection}.bias", v)
        add(prefix + "mlp.fc1.weight", VISION["intermediate_size"], v, scale=0.2)
        add(prefix + "mlp.fc1.bias", VISION["intermediate_size"])
        add(prefix + "mlp.fc2.weight", v, VISION["intermediate_size"], scale=0.2)
        add(prefix + "mlp.fc2.bias", v)
    add(vision + "post_layernorm.weight", v, around=1.0)
    add(vision + "post_layernorm.bias", v)
    add("model.mm_projector.0.weight", t, v, scale=0.2)
    add("model.mm_projector.0.bias", t)
    add("model.mm_projector.2.weight", t, t, scale=0.2)
    add("model.mm_projector.2.bias", t)
    add("model.image_newline", t, scale=0.5)
    add("model.embed_tokens.weight", vocab_size, t, scale=0.5)
    head_dim = t // TEXT["num_attention_heads"]
    kv = TEXT["num_key_value_heads"] * head_dim
    for layer in range(TEXT["num_hidden_layers"]):
        prefix = f"model.layers.{layer}."
        add(prefix + "self_attn.q_proj.weight", t, t, scale=0.2)
        add(prefix + "self_attn.q_proj.bias", t)
        add(prefix + "self_attn.k_proj.weight", kv, t, scale=0.2)
        add(prefix + "self_attn.k_proj.bias", kv)
        add(prefix + "self_attn.v_proj.weight", kv, t, scale=0.2)
        add(prefix + "self_attn.v_proj.bias", kv)
        add(prefix + "self_attn.o_proj.weight", t, t, scale=0.2)
        add(prefix + "mlp.gate_proj.weight", TEXT["intermediate_size"], t, scale=0.2)
        add(prefix + "mlp.up_proj.weight", TEXT["intermediate_size"], t, scale=0.2)
        add(prefix + "mlp.down_proj.weight", t, TEXT["intermediate_size"], scale=0.2)
        add(prefix + "input_layernorm.weight", t, around=1.0)
        add(prefix + "post_attention_layernorm.weight", t, around=1.0)
    add("model.norm.weight", t, around=1.0)
    # the VQ-Attention: exactly 20 tensors, as released
    add("model.cross_attention.to_q_proj.weight", t, tokens, scale=0.1)
    add("model.cross_attention.to_q_proj.bias", t)
    decoder = "model.cross_attention.transformer_decoder.layers.0."
    for attention in ("self_attn", "multihead_attn"):
        add(decoder + f"{attention}.in_proj_weight", 3 * t, t, scale=0.2)
        add(decoder + f"{attention}.in_proj_bias", 3 * t)
        add(decoder + f"{attention}.out_proj.weight", t, t, scale=0.2)
        add(decoder + f"{attention}.out_proj.bias", t)
    add(decoder + "linear1.weight", VQ_FEED_FORWARD, t, scale=0.2)
    add(decoder + "linear1.bias", VQ_FEED_FORWARD)
    add(decoder + "linear2.weight", t, VQ_FEED_FORWARD, scale=0.2)
    add(decoder + "linear2.bias", t)
    for norm in ("norm1", "norm2", "norm3"):
        add(decoder + f"{norm}.weight", t, around=1.0)
        add(decoder + f"{norm}.bias", t)
    return tensors


def released_config(tokenizer, vocab_size: int, tower: str = TINY_TOWER, model_type: str = "llava_qwen") -> dict:
    """
    A LLaVA-Qwen config.json as LLaVA-NeXT writes it: the tower is only named, images are -200. Its `LlavaQwenConfig`
    says model_type "llava_qwen"; the lmms-lab OneVision base checkpoints say "llava".
    """
    return {
        "architectures": ["LlavaQwenForCausalLM"],
        "model_type": model_type,
        "attention_dropout": 0.0,
        "bos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
        "hidden_act": "silu",
        "image_aspect_ratio": "anyres_max_9",
        "image_grid_pinpoints": PINPOINTS,
        "image_token_index": -200,
        "initializer_range": 0.02,
        "max_position_embeddings": 4096,
        "max_window_layers": 2,
        "mm_hidden_size": VISION["hidden_size"],
        "mm_newline_position": "one_token",
        "mm_patch_merge_type": "spatial_unpad",
        "mm_projector_type": "mlp2x_gelu",
        "mm_spatial_pool_mode": "bilinear",
        "mm_vision_select_feature": "patch",
        "mm_vision_select_layer": -2,
        "mm_vision_tower": tower,
        "rms_norm_eps": 1e-6,
        "rope_scaling": None,
        "rope_theta": 1000000.0,
        "sliding_window": 4096,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": vocab_size,
        **TEXT,
    }


def write_released_checkpoint(folder, tokenizer, tensors=None, config=None, shards: int = 2) -> Path:
    """Writes config.json and the tensors (in `shards` safetensors files with an index when > 1) into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab_size = len(tokenizer)
    tensors = tensors if tensors is not None else released_tensors(vocab_size)
    config = config if config is not None else released_config(tokenizer, vocab_size)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    keys = sorted(tensors)
    if shards == 1:
        save_file({k: tensors[k].contiguous() for k in keys}, str(folder / "model.safetensors"))
        return folder
    weight_map = {}
    for shard in range(shards):
        name = f"model-{shard + 1:05d}-of-{shards:05d}.safetensors"
        part = keys[shard::shards]
        save_file({k: tensors[k].contiguous() for k in part}, str(folder / name))
        weight_map.update({k: name for k in part})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


def write_vision_config(path) -> Path:
    """The SigLIP config of the tiny tower: a full SigLIP config.json with a `vision_config` (all 3 layers)."""
    path = Path(path)
    vision = {k: v for k, v in VISION.items() if k != "kept_layers"}
    path.write_text(
        json.dumps(
            {
                "model_type": "siglip",
                "vision_config": {"model_type": "siglip_vision_model", **vision},
                "text_config": {"model_type": "siglip_text_model"},
            }
        )
    )
    return path


def write_llava_hf_processor(folder, tokenizer) -> Path:
    """A stock `LlavaOnevisionProcessor` folder in the llava-hf layout, for the tiny tower."""
    from transformers import LlavaOnevisionImageProcessor, LlavaOnevisionProcessor, LlavaOnevisionVideoProcessor

    from vqtoken.tiny import CHAT_TEMPLATE

    size = {"height": VISION["image_size"], "width": VISION["image_size"]}
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size=size, crop_size=size, image_grid_pinpoints=PINPOINTS),
        tokenizer=tokenizer,
        video_processor=LlavaOnevisionVideoProcessor(size=size),
        num_image_tokens=(VISION["image_size"] // VISION["patch_size"]) ** 2,
        vision_feature_select_strategy="full",
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(str(folder))
    return Path(folder)
