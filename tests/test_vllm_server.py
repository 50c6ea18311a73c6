"""
`vllm serve` on a VQToken folder, through vLLM's OpenAI-compatible API, as the README documents it: a `.vqt` sent as
`video_embeds` answers as our Transformers `generate` does; bad videos are refused one request at a time (HTTP 400
with the reason) and the server keeps serving. Needs vLLM: run in .venv-vllm with scripts/test_vllm.sh.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch


pytest.importorskip("vllm")
openai = pytest.importorskip("openai")

from video_fixtures import write_test_video  # noqa: E402
from vllm_support import MAX_NEW_TOKENS, QUESTION, clip, lively_model, save_folder, transformers_answer  # noqa: E402


pytestmark = pytest.mark.vllm

STARTUP_SECONDS = 600


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A tiny VQToken folder (attention mode, fixed K = 6) served by `vllm serve`, with the model and files to ask."""
    from vqtoken.cache import encode_to_vqt
    from vqtoken.tiny import tiny_tokenizer

    root = tmp_path_factory.mktemp("served")
    model, processor = lively_model(tiny_tokenizer(), vqtoken_mode="attention", vqtoken_max_clusters=6)
    folder = save_folder(model, processor, root / "model")
    [vqt] = encode_to_vqt(model, processor, [clip(0)], [root / "clip.vqt"], num_frames=4)
    other, _ = lively_model(tiny_tokenizer(), seed=1, vqtoken_mode="attention", vqtoken_max_clusters=6)
    [foreign] = encode_to_vqt(other, processor, [clip(0)], [root / "foreign.vqt"], num_frames=4)
    video = write_test_video(root / "clip.mp4", clip(1, num_frames=8))
    broken = root / "broken.mp4"
    broken.write_bytes(video.read_bytes()[:300])

    port = _free_port()
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "1"}
    command = [
        str(Path(sys.executable).parent / "vllm"),
        "serve",
        folder,
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--enforce-eager",
        "--max-model-len",
        "2048",
        "--enable-mm-embeds",
        "--limit-mm-per-prompt",
        json.dumps({"image": 0, "video": 1}),
        "--allowed-local-media-path",
        str(root),
    ]
    log = open(root / "server.log", "w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            assert server.poll() is None, f"vllm serve exited: {(root / 'server.log').read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "vllm serve did not start in time"
            time.sleep(2)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none")
        yield {
            "client": client,
            "folder": folder,
            "model": model,
            "processor": processor,
            "vqt": vqt,
            "foreign": foreign,
            "video": video,
            "broken": broken,
            "port": port,
        }
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()


def ask(served, video_part):
    return served["client"].chat.completions.create(
        model=served["folder"],
        messages=[{"role": "user", "content": [video_part, {"type": "text", "text": QUESTION}]}],
        max_tokens=MAX_NEW_TOKENS,
        temperature=0.0,
    )


def embeds_part(tensor: torch.Tensor) -> dict:
    import base64
    import io

    buffer = io.BytesIO()
    np.save(buffer, tensor.numpy(), allow_pickle=False)
    return {"type": "video_embeds", "video_embeds": base64.b64encode(buffer.getvalue()).decode("ascii")}


def test_a_vqt_sent_to_the_server_answers_as_transformers_generate(served):
    from vqtoken.cache import load_cached_videos
    from vqtoken.vllm_plugin.vqt_inputs import video_embeds_part_from_vqt

    model, processor = served["model"], served["processor"]
    expected = transformers_answer(model, processor, video_outputs=load_cached_videos(served["vqt"], model))
    response = ask(served, video_embeds_part_from_vqt(served["vqt"]))
    assert response.choices[0].message.content == processor.tokenizer.decode(expected, skip_special_tokens=True)


def test_bad_videos_are_refused_and_the_server_stays_up(served):
    from vqtoken.vllm_plugin.vqt_inputs import video_embeds_part_from_vqt

    refusals = {
        "model_fingerprint": video_embeds_part_from_vqt(served["foreign"]),
        "hidden dimension mismatch": embeds_part(torch.randn(7, 100)),
        "Could not open video stream": {"type": "video_url", "video_url": {"url": served["broken"].as_uri()}},
    }
    for message, part in refusals.items():
        with pytest.raises(openai.BadRequestError, match=message):
            ask(served, part)
    with urllib.request.urlopen(f"http://127.0.0.1:{served['port']}/health", timeout=5) as response:
        assert response.status == 200
    # frames decoded by vLLM, then a .vqt, still answered
    from_frames = ask(served, {"type": "video_url", "video_url": {"url": served["video"].as_uri()}})
    assert from_frames.choices[0].message.content
    assert ask(served, video_embeds_part_from_vqt(served["vqt"])).choices[0].message.content
