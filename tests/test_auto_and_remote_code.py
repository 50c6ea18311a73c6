import json
import os
import subprocess
import sys
import textwrap

import torch
from helpers import BLOCK_VQTOKEN, random_clip, video_prompt
from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText, AutoProcessor

import vqtoken


def save_tiny(build_model, folder, **settings):
    model, processor = build_model(**settings)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return model, processor


def test_auto_classes_resolve_without_remote_code(build_model, tmp_path):
    model, _ = save_tiny(build_model, tmp_path, vqtoken_mode="centroids", vqtoken_max_clusters=4)
    assert type(AutoConfig.from_pretrained(tmp_path)) is vqtoken.VQTokenLlavaOnevisionConfig
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path)
    assert type(loaded) is vqtoken.VQTokenLlavaOnevisionForConditionalGeneration
    assert type(AutoModel.from_pretrained(tmp_path)) is vqtoken.VQTokenLlavaOnevisionForConditionalGeneration
    processor = AutoProcessor.from_pretrained(tmp_path)
    assert type(processor) is vqtoken.VQTokenLlavaOnevisionProcessor
    assert processor.vqtoken_mode == "centroids" and processor.vqtoken_max_clusters == 4
    assert processor.chat_template is not None
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name


def test_saved_folder_is_self_contained_remote_code(build_model, tmp_path):
    folder = tmp_path / "vqtoken-tiny"
    model, processor = save_tiny(build_model, folder, vqtoken_mode="attention", vqtoken_max_clusters=5)
    files = set(os.listdir(folder))
    assert {
        "configuration_vqtoken_llava_onevision.py",
        "modeling_vqtoken_llava_onevision.py",
        "processing_vqtoken_llava_onevision.py",
        "vqtoken_kmeans.py",
        "vqtoken_kmeans_triton.py",
        "vqtoken_attention.py",
    } <= files
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    for auto_class in ("AutoConfig", "AutoModel", "AutoModelForImageTextToText", "AutoModelForMultimodalLM"):
        assert auto_class in auto_map

    inputs = processor(text=[video_prompt(processor)], videos=[random_clip(0)], return_tensors="pt")
    with torch.no_grad():
        expected = model(**inputs).logits
        expected_generation = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    torch.save(
        {"inputs": dict(inputs), "logits": expected, "generation": expected_generation}, tmp_path / "expected.pt"
    )

    script = BLOCK_VQTOKEN + textwrap.dedent(
        f"""
        import torch
        from transformers import AutoModel, AutoModelForImageTextToText, AutoProcessor
        torch.set_num_threads(1)
        folder = {str(folder)!r}
        expected = torch.load({str(tmp_path / "expected.pt")!r}, weights_only=False)
        processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
        assert type(processor).__name__ == "VQTokenLlavaOnevisionProcessor", type(processor)
        assert sys.modules["vqtoken"] is None and sys.modules["triton"] is None
        from helpers_remote import make_inputs
        for auto in (AutoModel, AutoModelForImageTextToText):
            model = auto.from_pretrained(folder, trust_remote_code=True).eval()
            assert type(model).__name__ == "VQTokenLlavaOnevisionForConditionalGeneration", type(model)
            assert not type(model).__module__.startswith("vqtoken"), type(model).__module__
            with torch.no_grad():
                logits = model(**expected["inputs"]).logits
                generation = model.generate(**expected["inputs"], max_new_tokens=4, min_new_tokens=4, do_sample=False)
            assert torch.equal(logits, expected["logits"]), (logits - expected["logits"]).abs().max()
            assert torch.equal(generation, expected["generation"])
        reprocessed = make_inputs(processor)
        assert torch.equal(reprocessed["input_ids"], expected["inputs"]["input_ids"])
        print("REMOTE-OK")
        """
    )
    helper = tmp_path / "helpers_remote.py"
    helper.write_text(
        "import numpy as np\n"
        "def make_inputs(processor):\n"
        "    clip = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)\n"
        "    messages = [{'role': 'user', 'content': [{'type': 'video'}, {'type': 'text', 'text': "
        "'what colour is the square ?'}]}]\n"
        "    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)\n"
        "    return processor(text=[prompt], videos=[clip], return_tensors='pt')\n"
    )
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "REMOTE-OK" in result.stdout
