"""
Sending `.vqt` files (videos encoded once by `vqtoken encode`) to a vLLM engine serving a VQToken folder.

A `.vqt` travels whole, as its bytes: the server reads it with `vqtoken.cache`, refuses it if another model or other
VQ settings made it, and rebuilds the video's tokens with its own VQ-Attention and newline, so the client needs
neither the model nor vLLM, only this module (torch and numpy). The number of tokens is the file's (`K + 1`, or
`max(T, K) + 1` in attention mode): this is how a video clustered with an adaptive K is served, which vLLM cannot do
from frames, as it sizes a prompt before encoding it.

The engine must run with `enable_mm_embeds=True` (`--enable-mm-embeds`), as for any precomputed input.
"""

import base64
import io
import os
from pathlib import Path

import numpy as np
import torch


VQT_FIELD = "vqt"
"""Key of the `.vqt` bytes in a video's `multi_modal_data` entry or `video_embeds` content part."""


def _read_bytes(source) -> bytes:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        return Path(source).read_bytes()
    raise TypeError(f"A .vqt is given as a path or as bytes, got {type(source).__name__}.")


def video_input_from_vqt(sources) -> dict:
    """
    The `multi_modal_data["video"]` entry of an offline vLLM request (`vllm.LLM.generate`) for one or several `.vqt`
    files, in the order of the prompt's `<video>` placeholders.

    Args:
        sources: a path or the bytes of one `.vqt`, or a list of them.

    Returns:
        `{"vqt": tensor}` (one file: a 1-D uint8 tensor of its bytes) or `{"vqt": [tensor, ...]}`.
    """
    if isinstance(sources, (list, tuple)):
        return {VQT_FIELD: [_bytes_tensor(_read_bytes(source)) for source in sources]}
    return {VQT_FIELD: _bytes_tensor(_read_bytes(sources))}


def video_embeds_part_from_vqt(source, uuid: str | None = None) -> dict:
    """
    The chat-completions content part that sends one `.vqt` to vLLM's OpenAI-compatible server (started with
    `--enable-mm-embeds`): `{"type": "video_embeds", "video_embeds": {"vqt": <base64 .npy of the file's bytes>}}`.
    Put it where the video goes in the message's `content` list, next to the `{"type": "text", ...}` part.

    Args:
        source: the path or the bytes of a `.vqt` file.
        uuid: optional identifier of the video, for vLLM's multimodal caches.
    """
    buffer = io.BytesIO()
    np.save(buffer, np.frombuffer(_read_bytes(source), dtype=np.uint8), allow_pickle=False)
    part = {"type": "video_embeds", "video_embeds": {VQT_FIELD: base64.b64encode(buffer.getvalue()).decode("ascii")}}
    if uuid is not None:
        part["uuid"] = uuid
    return part


def _bytes_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


__all__ = ["VQT_FIELD", "video_embeds_part_from_vqt", "video_input_from_vqt"]
