"""
Shared pieces of the vLLM tests (tests/test_vllm_*.py, run in .venv-vllm by scripts/test_vllm.sh): tiny VQToken
folders whose answers depend on the video, the Transformers reference answers, and an in-process vLLM engine.
"""

import contextlib
import gc
import os

import numpy as np
import torch


# one process, small KV cache: set before vLLM is imported
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

MAX_NEW_TOKENS = 8
QUESTION = "what colour is the square ?"


def lively_model(tokenizer, seed: int = 0, **settings):
    """
    A tiny VQToken model and its processor, saved-folder ready for vLLM (text head size 64, which vLLM's CPU attention
    needs), with weights drawn at std 0.1 so that greedy answers change with the video: with the usual std 0.02 a
    random tiny model repeats one token whatever it is shown, and a parity test would prove little.
    """
    import vqtoken
    from vqtoken.tiny import tiny_config, tiny_processor

    config = tiny_config(tokenizer, hidden_size=256, **settings)
    torch.manual_seed(seed)
    model = vqtoken.VQTokenLlavaOnevisionForConditionalGeneration(config).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
                module.weight.normal_(0, 0.1)
        model.model.image_newline.normal_(0, 0.1)
    return model, tiny_processor(config, tokenizer)


def save_folder(model, processor, path) -> str:
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)


def clip(seed: int, num_frames: int = 4) -> np.ndarray:
    """A random uint8 clip `(num_frames, 32, 32, 3)`."""
    return np.random.default_rng(seed).integers(0, 256, (num_frames, 32, 32, 3), dtype=np.uint8)


def prompt(processor) -> str:
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": QUESTION}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True)


def stop_token_ids(processor) -> list[int]:
    """What vLLM stops at (the tokenizer's EOS and generation_config's), so that Transformers stops there too."""
    tokenizer = processor.tokenizer
    return sorted({tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")})


@torch.no_grad()
def transformers_answer(model, processor, frames=None, video_outputs=None, text=None) -> list[int]:
    """Greedy tokens of our Transformers `generate` for one prompt (default: [`prompt`]), alone: with the frames of a
    video, or with videos encoded beforehand."""
    text = text if text is not None else prompt(processor)
    if frames is not None:
        inputs = processor(text=text, videos=[frames], return_tensors="pt")
    else:
        # one placeholder per token of each video, so that `generate` keeps the prompt's length as it is
        pieces = text.split(processor.video_token)
        counts = [tokens.shape[0] for tokens in video_outputs.pooler_output]
        assert len(pieces) == len(counts) + 1
        text = pieces[0] + "".join(processor.video_token * count + piece for count, piece in zip(counts, pieces[1:]))
        inputs = processor.tokenizer(text, return_tensors="pt")
    output = model.generate(
        **inputs,
        video_outputs=video_outputs,
        max_new_tokens=MAX_NEW_TOKENS,
        do_sample=False,
        eos_token_id=stop_token_ids(processor),
    )
    return output[0, inputs["input_ids"].shape[1] :].tolist()


def greedy():
    from vllm import SamplingParams

    return SamplingParams(max_tokens=MAX_NEW_TOKENS, temperature=0.0)


@contextlib.contextmanager
def engine(folder: str, **kwargs):
    """An in-process `vllm.LLM` on CPU in fp32, shut down on exit."""
    from vllm import LLM

    settings = {"dtype": "float32", "enforce_eager": True, "max_model_len": 2048, "seed": 0, **kwargs}
    llm = LLM(folder, **settings)
    try:
        yield llm
    finally:
        llm.llm_engine.engine_core.shutdown()
        del llm
        gc.collect()


def answers(outputs) -> list[list[int]]:
    return [list(output.outputs[0].token_ids) for output in outputs]


def video_placeholders(output, video_token_id: int) -> int:
    return sum(token == video_token_id for token in output.prompt_token_ids)
