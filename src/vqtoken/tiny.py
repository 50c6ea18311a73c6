"""
Tiny VQToken models, tokenizers and processors built offline, for tests, the demo and smoke runs.

Nothing here downloads anything: the tokenizer is a byte-level BPE trained in milliseconds on a small corpus, the
vision tower is a small SigLIP and the language model a small Qwen2, both randomly initialised unless weights are
loaded on top.
"""

from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from tokenizers import decoders as tokenizer_decoders
from transformers import LlavaOnevisionImageProcessor, LlavaOnevisionVideoProcessor, Qwen2Tokenizer

from .modeling.configuration_vqtoken_llava_onevision import VQTokenLlavaOnevisionConfig
from .modeling.processing_vqtoken_llava_onevision import VQTokenLlavaOnevisionProcessor


SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]

# Qwen 1.5 / LLaVA-OneVision chat layout; images and videos are written before the text of a turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<image>\n' }}"
    "{% elif content['type'] == 'video' %}{{ '<video>\n' }}{% endif %}"
    "{% endfor %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}"
    "{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

TOKENIZER_CORPUS = [
    "what colour is the square in this video ? the square is red green blue yellow white",
    "which way does the square move ? it moves left right up down",
    "how many objects are there ? one two three four",
    "describe the video . a small square slides across a dark background",
    "user assistant system you are a helpful assistant answer the question",
    "0 1 2 3 4 5 6 7 8 9 yes no",
    "what colour is the shape ? what shape is it ? which way does it move ? how many objects are there ?",
]
# The answers of the synthetic set (vqtoken.training.synthetic_data), one per line: a word that starts a line is
# learnt without a leading space, as an answer right after the assistant header is written, so each is one token.
ANSWER_WORDS = "red green blue yellow square circle triangle diamond left right up down one two three four".split()


def tiny_tokenizer(vocab_size: int = 512) -> Qwen2Tokenizer:
    """A byte-level BPE tokenizer with the Qwen2 special tokens and `<image>` / `<video>`, trained offline."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = tokenizer_decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(TOKENIZER_CORPUS + ANSWER_WORDS, trainer=trainer)
    model = backend.model
    vocab = backend.get_vocab()
    merges = [tuple(merge.split(" ")) if isinstance(merge, str) else tuple(merge) for merge in _bpe_merges(model)]
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None)
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    tokenizer.image_token = "<image>"
    tokenizer.video_token = "<video>"
    tokenizer.image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    tokenizer.video_token_id = tokenizer.convert_tokens_to_ids("<video>")
    return tokenizer


def _bpe_merges(model) -> list:
    """Merges of a trained `tokenizers` BPE model, read from its serialised form."""
    import json

    return json.loads(Tokenizer(model).to_str())["model"]["merges"]


def tiny_config(
    tokenizer: Qwen2Tokenizer | None = None,
    image_size: int = 32,
    patch_size: int = 8,
    hidden_size: int = 32,
    **vqtoken_settings,
) -> VQTokenLlavaOnevisionConfig:
    """
    A VQToken configuration with a 2-layer SigLIP tower and a 2-layer Qwen2 language model.

    Args:
        tokenizer: the tokenizer whose vocabulary and `<image>` / `<video>` ids the model must fit
            (default: [`tiny_tokenizer`]).
        image_size, patch_size: frame size and patch size of the tower; a frame gives `(image_size // patch_size)**2`
            tokens.
        hidden_size: hidden size of the language model (the width of the visual tokens).
        **vqtoken_settings: any `vqtoken_*` field of [`VQTokenLlavaOnevisionConfig`]; the attention sizes default to
            2 heads and a 64-wide feed-forward.
    """
    tokenizer = tokenizer if tokenizer is not None else tiny_tokenizer()
    vision_config = {
        "model_type": "siglip_vision_model",
        "hidden_size": 24,
        "intermediate_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": image_size,
        "patch_size": patch_size,
        "vision_use_head": False,
    }
    text_config = {
        "model_type": "qwen2",
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size,
        "intermediate_size": 2 * hidden_size,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "rope_theta": 1e6,
        "tie_word_embeddings": True,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
    }
    settings = {"vqtoken_attention_heads": 2, "vqtoken_attention_intermediate_size": 64, **vqtoken_settings}
    return VQTokenLlavaOnevisionConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=tokenizer.image_token_id,
        video_token_index=tokenizer.video_token_id,
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        image_grid_pinpoints=[[image_size, image_size], [image_size, 2 * image_size], [2 * image_size, image_size]],
        tie_word_embeddings=True,
        **settings,
    )


def tiny_processor(config: VQTokenLlavaOnevisionConfig, tokenizer: Qwen2Tokenizer | None = None):
    """The [`VQTokenLlavaOnevisionProcessor`] matching `config` (frame size, placeholder counts, chat template)."""
    tokenizer = tokenizer if tokenizer is not None else tiny_tokenizer()
    image_size = config.vision_config.image_size
    size = {"height": image_size, "width": image_size}
    image_processor = LlavaOnevisionImageProcessor(
        size=size, crop_size=size, image_grid_pinpoints=config.image_grid_pinpoints
    )
    video_processor = LlavaOnevisionVideoProcessor(size=size)
    return VQTokenLlavaOnevisionProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        num_image_tokens=(image_size // config.vision_config.patch_size) ** 2,
        vision_feature_select_strategy=config.vision_feature_select_strategy,
        chat_template=CHAT_TEMPLATE,
        vqtoken_mode=config.vqtoken_mode,
        vqtoken_max_clusters=config.vqtoken_max_clusters,
    )
