"""
Offline material for the lmms-eval tests and benchmark: the built-in default model saved twice (as a VQToken folder
and as stock LLaVA-OneVision with the same weights), synthetic clips written with PyAV, and lmms-eval tasks over them.

Not library code. The default model was trained on these synthetic clips, so its answers depend on the video (colour,
shape, direction, count) and an accuracy is not zero. The clips have `CLIP_FRAMES` frames and the model reads
`NUM_FRAMES`: `(29 - 1) / (8 - 1)` is whole, so lmms-eval's decord loader (`linspace(...).astype(int)`) and
VQToken's PyAV loader (`rint(linspace(...))`) pick the same frames, and the comparison with `llava_hf` compares the
models, not the samplers.
"""

import json
import textwrap
from pathlib import Path

import numpy as np


NUM_FRAMES = 8
CLIP_FRAMES = 29
CLIP_SIZE = 64

TASK_UTILS = '''
"""Functions of the tiny offline tasks (written by the VQToken tests)."""


def doc_to_visual(doc):
    return [doc["video"]]


def image_doc_to_visual(doc):
    from PIL import Image

    return [Image.open(doc["image"]).convert("RGB")]


def text_doc_to_visual(doc):
    return []


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["question"]


def doc_to_choice(doc):
    return doc["choices"]


def process_results(doc, results):
    return {"accuracy": float(results[0].strip() == doc["answer"])}


def multi_round_doc_to_text(doc, lmms_eval_specific_kwargs=None, previous_output=None, round_idx=None,
                            previous_round_info=None):
    """Round 0 asks `question`, round 1 `second_question` about the same video, then the request ends."""
    if round_idx is None:
        return doc["question"]
    if round_idx == 1:
        return [doc["video"]], doc["second_question"], False, previous_output, None
    return None, None, True, previous_output, None


def multi_round_process_results(doc, results):
    rounds = results[0]
    return {"accuracy": float(rounds[0].strip() == doc["answer"] and rounds[1].strip() == doc["second_answer"])}
'''


def save_model_folders(root: Path) -> tuple[Path, Path]:
    """
    Saves the built-in default model twice: `root/vqtoken` (VQToken folder) and `root/stock`
    (`LlavaOnevisionForConditionalGeneration` + `LlavaOnevisionProcessor` holding the same weights, the VQ-Attention
    left out). Both tokenizers end a turn with `<|im_end|>` as LLaVA-OneVision's Qwen2 tokenizer does (the default
    model's says `<|endoftext|>`): lmms-eval's `llava_hf` stops on the tokenizer's end token, VQToken on the model's
    `generation_config` (`<|im_end|>`). Returns both folders.
    """
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration, LlavaOnevisionProcessor

    from vqtoken.loading import load_model_and_processor

    model, processor = load_model_and_processor(None, device="cpu", dtype="float32")
    processor.tokenizer.eos_token = "<|im_end|>"
    vqtoken_dir, stock_dir = root / "vqtoken", root / "stock"
    model.save_pretrained(vqtoken_dir)
    processor.save_pretrained(vqtoken_dir)

    settings = {key: value for key, value in model.config.to_dict().items() if not key.startswith("vqtoken_")}
    for key in ("model_type", "architectures", "auto_map", "transformers_version", "custom_pipelines"):
        settings.pop(key, None)
    stock = LlavaOnevisionForConditionalGeneration(LlavaOnevisionConfig(**settings)).eval()
    result = stock.load_state_dict(model.state_dict(), strict=False)
    if result.missing_keys or any(not key.startswith("model.vq_attention.") for key in result.unexpected_keys):
        raise AssertionError(f"stock twin: missing {result.missing_keys}, unexpected {result.unexpected_keys}")
    stock.generation_config = model.generation_config
    stock.save_pretrained(stock_dir)
    LlavaOnevisionProcessor(
        image_processor=processor.image_processor,
        tokenizer=processor.tokenizer,
        video_processor=processor.video_processor,
        num_image_tokens=processor.num_image_tokens,
        vision_feature_select_strategy=processor.vision_feature_select_strategy,
        chat_template=processor.chat_template,
    ).save_pretrained(stock_dir)
    return vqtoken_dir, stock_dir


def write_clips(folder: Path, num_clips: int, seed: int = 0) -> list[tuple[Path, object]]:
    """`num_clips` synthetic clips (`CLIP_FRAMES` frames of `CLIP_SIZE` px) written with PyAV: `(path, ClipSpec)`."""
    from vqtoken.synthetic import write_clip
    from vqtoken.training.synthetic_data import random_spec, render_clip

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    clips = []
    for index in range(num_clips):
        spec = random_spec(rng)
        path = write_clip(folder / f"clip{index}.mp4", render_clip(spec, num_frames=CLIP_FRAMES, size=CLIP_SIZE))
        clips.append((path.resolve(), spec))
    return clips


TASK_OUTPUTS = {
    "generate_until": """
        output_type: generate_until
        generation_kwargs:
          max_new_tokens: 4
          temperature: 0
          do_sample: false
          until: ["<|im_end|>"]
        process_results: !function utils.process_results
        metric_list:
          - metric: accuracy
            aggregation: mean
            higher_is_better: true
    """,
    "multiple_choice": """
        output_type: multiple_choice
        target_delimiter: ""
        doc_to_choice: !function utils.doc_to_choice
        metric_list:
          - metric: acc
            aggregation: mean
            higher_is_better: true
    """,
    "generate_until_multi_round": """
        output_type: generate_until_multi_round
        doc_to_text: !function utils.multi_round_doc_to_text
        generation_kwargs:
          max_new_tokens: 4
          temperature: 0
          do_sample: false
        process_results: !function utils.multi_round_process_results
        metric_list:
          - metric: accuracy
            aggregation: mean
            higher_is_better: true
    """,
}


VISUALS = {"video": "doc_to_visual", "image": "image_doc_to_visual", "text": "text_doc_to_visual"}


def write_task(
    root: Path, name: str, num_docs: int = 8, output_type: str = "generate_until", visual: str = "video"
) -> Path:
    """
    Writes `num_docs` clips and an lmms-eval task `name` over them into `root/name`: one question per clip (the four
    question types in turn; the multiple-choice form offers the four answers of its type, the multi-round form asks a
    second question). `visual`: the task shows the clip (`"video"`), its middle frame as a PNG image (`"image"`), or
    nothing (`"text"`). Returns the folder to pass as `include_path`.
    """
    from PIL import Image

    from vqtoken.training.synthetic_data import ANSWERS, QUESTION_TYPES, QUESTIONS, render_clip

    folder = root / name
    clips = write_clips(folder / "videos", num_docs)
    with (folder / "docs.jsonl").open("w") as docs:
        for index, (path, spec) in enumerate(clips):
            question_type = QUESTION_TYPES[index % len(QUESTION_TYPES)]
            second_type = QUESTION_TYPES[(index + 1) % len(QUESTION_TYPES)]
            image = path.with_suffix(".png")
            Image.fromarray(render_clip(spec, num_frames=CLIP_FRAMES, size=CLIP_SIZE)[CLIP_FRAMES // 2]).save(image)
            doc = {
                "video": str(path),
                "image": str(image),
                "question": QUESTIONS[question_type],
                "answer": spec.answer(question_type),
                "choices": list(ANSWERS[question_type]),
                "second_question": QUESTIONS[second_type],
                "second_answer": spec.answer(second_type),
            }
            docs.write(json.dumps(doc) + "\n")
    (folder / "utils.py").write_text(TASK_UTILS)
    header = f"""
        task: {name}
        dataset_path: json
        dataset_kwargs:
          data_files:
            test: {(folder / "docs.jsonl").resolve()}
        test_split: test
        doc_to_visual: !function utils.{VISUALS[visual]}
        doc_to_text: !function utils.doc_to_text
        doc_to_target: answer
    """
    config = textwrap.dedent(header) + textwrap.dedent(TASK_OUTPUTS[output_type])
    if output_type == "generate_until_multi_round":  # its own doc_to_text replaces the single-round one
        config = config.replace("doc_to_text: !function utils.doc_to_text\n", "", 1)
    (folder / f"{name}.yaml").write_text(config)
    return folder
