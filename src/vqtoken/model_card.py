# Copyright 2026 The VQToken for Transformers authors. Licensed under the Apache License, Version 2.0.
"""The model card (the Hub README) of a converted VQToken checkpoint."""

import yaml

from .files import looks_like_local_path


UPSTREAM_CODE = "https://github.com/Hai-chao-Zhang/VQToken"
UPSTREAM_WEIGHTS = "haichaozhang/VQ-Token-llava-ov-0.5b"
UPSTREAM_BASE = "lmms-lab/llava-onevision-qwen2-0.5b-ov"
PAPER = (
    "VQToken: Neural Discrete Token Representation Learning for Extreme Token Reduction in Video Large Language "
    "Models (Haichao Zhang and Yun Fu)"
)
WIDGET_VIDEO = "https://huggingface.co/datasets/raushan-testing-hf/videos-test/resolve/main/sample_demo_1.mp4"


def model_card(
    *,
    repo_id: str,
    source: str,
    config,
    processor: str,
    vision_tower: str,
    dtype: str,
    parameters: int,
    license: str = "other",
    source_revision: str | None = None,
    base_model: str | None = None,
    datasets: list[str] | None = None,
    tags: list[str] | None = None,
) -> str:
    """
    README.md text (YAML front matter + Markdown) for a converted checkpoint.

    Args:
        repo_id: the Hub id the usage examples load.
        source: the released checkpoint the weights came from (Hub id or folder); a Hub id is also the `base_model`.
        config: the [`VQTokenLlavaOnevisionConfig`] written next to the card (VQ settings, sizes).
        processor: the llava-hf processor whose tokenizer and image/video processors were reused.
        vision_tower, dtype, parameters: as in the conversion report.
        license: licence identifier of the weights (the converter takes the source README's).
        base_model: defaults to `source` when it is a Hub id, else the released checkpoint's id.
        datasets: Hub datasets for the metadata; defaults to the benchmark whose numbers are quoted (NExT-QA).
    """
    is_hub_id = "/" in source and not looks_like_local_path(source)
    metadata = {
        "pipeline_tag": "video-text-to-text",
        "library_name": "transformers",
        "base_model": [base_model or (source if is_hub_id else UPSTREAM_WEIGHTS)],
        "license": license,
        "tags": tags
        or ["vqtoken", "llava-onevision", "video", "token-reduction", "vector-quantization", "custom_code"],
        "datasets": datasets or ["lmms-lab/NExTQA"],
        "widget": [
            {
                "src": WIDGET_VIDEO,
                "text": "What is happening in this video?",
                "example_title": "Describe a video",
            }
        ],
    }
    front_matter = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True).strip()
    text = config.text_config
    vision = config.vision_config
    grid = vision.image_size // vision.patch_size
    revision = f" (revision `{source_revision}`)" if source_revision else ""
    return f"""---
{front_matter}
---

# {repo_id.split("/")[-1]}

VQToken on LLaVA-OneVision ({parameters:,} parameters, {dtype}): each video reaches the language model as a
handful of tokens — a K-means codebook of its visual tokens, optionally mixed with the token-hash index map by the
learned VQ-Attention — instead of `frames x 196` tokens.

These are the weights released by the VQToken authors (`{source}`{revision}, code: {UPSTREAM_CODE}), converted
unchanged (renamed, cast to {dtype}) into a Transformers model with its code in this repository. The vision tower
(`{vision_tower}`, {vision.num_hidden_layers} layers kept) and the language model (Qwen2, hidden size
{text.hidden_size}, {text.num_hidden_layers} layers) come from the VQToken checkpoint; the tokenizer, chat template and
image/video processors from `{processor}`.

## Usage

With remote code (only `transformers`, `torch` and `torchvision` needed):

```python
import numpy as np
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

model_id = "{repo_id}"
processor = AutoProcessor.from_pretrained(model_id, trust_remote_code=True)
model = AutoModelForImageTextToText.from_pretrained(model_id, trust_remote_code=True, dtype=torch.bfloat16)

video = np.zeros((32, {vision.image_size}, {vision.image_size}, 3), dtype=np.uint8)  # (frames, height, width, rgb)
messages = [{{"role": "user", "content": [{{"type": "video"}}, {{"type": "text", "text": "What happens in the video?"}}]}}]
prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
inputs = processor(text=[prompt], videos=[video], return_tensors="pt").to(model.device, torch.bfloat16)
output = model.generate(**inputs, max_new_tokens=64, do_sample=False)
print(processor.decode(output[0, inputs.input_ids.shape[1]:], skip_special_tokens=True))
```

With the `vqtoken` package installed (`pip install vqtoken`), the classes are registered with the Auto classes and
`trust_remote_code` is not needed; the package also decodes video files:

```python
import vqtoken  # registers the VQToken classes
from transformers import AutoModelForImageTextToText, AutoProcessor

model = AutoModelForImageTextToText.from_pretrained("{repo_id}")
processor = AutoProcessor.from_pretrained("{repo_id}")
```

With a pipeline (chat messages may hold a video):

```python
from transformers import pipeline

pipe = pipeline("image-text-to-text", model="{repo_id}", trust_remote_code=True)
messages = [{{"role": "user", "content": [{{"type": "video", "video": video}}, {{"type": "text", "text": "Describe it."}}]}}]
print(pipe(text=messages, max_new_tokens=64))
```

## VQ settings

They live in `config.json` and can be overridden at load time, e.g.
`from_pretrained(model_id, vqtoken_mode="centroids")`; keep the processor's `vqtoken_mode` and
`vqtoken_max_clusters` equal to the model's (it writes the matching number of video placeholders).

| setting | value here | what it does |
|---|---|---|
| `vqtoken_mode` | `{config.vqtoken_mode}` | `attention`: the learned VQ-Attention output, `max(T, K)` tokens (the released default); `centroids`: the `K` codebook vectors; `off`: stock OneVision video tokens. Every mode adds one newline token. |
| `vqtoken_selection_method` | `{config.vqtoken_selection_method}` | how `K` is chosen per video: `fixed` uses `vqtoken_max_clusters`; `elbow` is the released rule on the distortion curve; `elbow_corrected` takes the elbow point itself; `silhouette` the best mean cosine silhouette. |
| `vqtoken_min_clusters` | `{config.vqtoken_min_clusters}` | smallest candidate `K` of the adaptive methods. |
| `vqtoken_max_clusters` | `{config.vqtoken_max_clusters}` | `K` of `fixed`; largest candidate of the adaptive methods. |
| `vqtoken_spatial_pool` | `{config.vqtoken_spatial_pool}` | `False` clusters all {grid}x{grid} tokens of every frame, as the release does. |
| `vqtoken_seed` | `{config.vqtoken_seed}` | seed of the k-means++ initialisation: the same video gives the same tokens. |
| `vqtoken_kmeans_backend` | `{config.vqtoken_kmeans_backend}` | `torch`, `triton` (CUDA) or `auto`. |

## Results reported by the paper

The numbers below are the authors' ({PAPER}); they were not re-measured for this conversion. On NExT-QA
multiple choice, VQToken with 32 tokens per video reports 57.5 % accuracy against 57.2 % for LLaVA-OneVision-0.5B with
all its video tokens; the adaptive mode reports 57.72 % with 13.08 tokens on average.

## Limits

- The code follows the released procedure but not bit for bit: K-means is seeded (the release was not), and the
  adaptive selection scores candidates by merging one fit instead of refitting each `K`, so answers can differ from the
  released runtime's.
- Images are not compressed (stock OneVision path); only videos are.
- `attention` mode returns `max(frames, K)` tokens; use at most `vqtoken_max_clusters` frames to get exactly `K`.
- The VQ-Attention head count (8) is not stored in the released tensors; it is taken from the released code.
- A 0.5B language model: short answers, limited reasoning, English-centred; inherits the biases of its training data.
- The licence of the weights is the source checkpoint's (`{license}`); check it before use.
"""


__all__ = ["model_card"]
