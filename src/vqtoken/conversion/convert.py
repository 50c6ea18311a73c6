# Copyright 2026 The VQToken for Transformers authors. Licensed under the Apache License, Version 2.0.
"""
Conversion of the released VQToken checkpoint (LLaVA-NeXT layout) into a self-contained Transformers folder.

The released weights (`haichaozhang/VQ-Token-llava-ov-0.5b`) use LLaVA-NeXT's parameter names and a LLaVA-style
`config.json` that only names its SigLIP tower. [`convert_checkpoint`] renames every tensor into
[`VQTokenLlavaOnevisionForConditionalGeneration`], builds the configuration from the source configuration, the known
tower (or `--vision-config`) and the tensors, reuses a llava-hf OneVision processor, and writes safetensors, the
remote-code files, the processor, `generation_config.json`, a model card and `conversion_report.json` into a temporary
folder. The result is then reloaded through the Auto classes with `trust_remote_code=True` in a clean process and
compared tensor by tensor with the source; only then is the temporary folder renamed to the output folder.

The steps live in small modules: `checkpoint` (reading), `key_map` (names), `building` (configuration, processor,
generation config), `verify` (the clean-process reload), `report` (the report and file manifest); this one orders them.
Command line: `vqtoken convert` (or `python conversion/convert_vqtoken_to_hf.py`).
"""

import contextlib
import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch

from .building import (
    RELEASED_VQ_ATTENTION_HEADS,
    build_config,
    build_generation_config,
    build_processor,
    load_source_processor,
    load_vision_config,
    target_dtype,
)
from .checkpoint import read_checkpoint, read_json, resolve_folder
from .key_map import SOURCE_LM_HEAD_KEY, map_state_dict
from .report import REPORT_FILE, ConversionError, ConversionReport, file_manifest
from .verify import verify_converted_folder


logger = logging.getLogger(__name__)

DEFAULT_PROCESSOR = "llava-hf/llava-onevision-qwen2-0.5b-ov-hf"
DEFAULT_MAX_SHARD_SIZE = "2GB"


def convert_checkpoint(
    checkpoint: str,
    output: str | os.PathLike,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    dtype: str = "keep",
    processor: str = DEFAULT_PROCESSOR,
    processor_revision: str | None = None,
    vision_config: str | None = None,
    vqtoken_settings: dict | None = None,
    vq_attention_heads: int = RELEASED_VQ_ATTENTION_HEADS,
    max_shard_size: str | int = DEFAULT_MAX_SHARD_SIZE,
    repo_id: str | None = None,
    license: str | None = None,
    overwrite: bool = False,
    verify: bool = True,
    verify_block_modules=("vqtoken",),
) -> ConversionReport:
    """
    Converts a released VQToken checkpoint into a Transformers folder at `output` (see the module docstring).
    `vqtoken_settings` (`vqtoken_*` fields) are written into its configuration; the others keep the configuration's
    defaults, which are the released runtime's.

    Nothing is left at `output` when any step fails: everything is written into a temporary sibling folder that is
    renamed at the end. Raises [`ConversionError`] with the reason.
    """
    output = Path(output).expanduser().resolve()
    if output.exists() and not overwrite:
        raise ConversionError(f"{output} already exists (pass overwrite=True / --overwrite to replace it).")
    source = read_source(checkpoint, revision, token, vision_config)
    weights_dtype = target_dtype(dtype, source.tensors)
    processor_folder = resolve_folder(
        processor, processor_revision, token, ["*.json", "*.jinja", "*.txt", "*.model", "tokenizer*"]
    )
    source_processor = load_source_processor(processor_folder, processor)
    settings = {**(vqtoken_settings or {}), "vqtoken_attention_heads": vq_attention_heads}
    config = build_config(
        source.config,
        source.tensors,
        source_processor,
        source.vision_fields,
        source.kept_layers,
        settings,
        weights_dtype,
    )
    vq_processor = build_processor(source_processor, config, source.config.get("image_aspect_ratio"))
    if vq_processor.tokenizer.convert_tokens_to_ids(vq_processor.video_token) != config.video_token_id:
        raise ConversionError("The processor's video token differs from the tokenizer's.")
    model, sources, dropped = build_model(config, source.tensors, weights_dtype)
    model.generation_config = build_generation_config(
        [source.folder, processor_folder], config, vq_processor.tokenizer
    )

    report = ConversionReport(
        source=checkpoint,
        source_revision=revision,
        source_files=sorted(set(source.origin.values())),
        processor=processor,
        vision_tower=source.vision_description,
        dtype=str(weights_dtype).replace("torch.", ""),
        # a tied lm_head.weight present in the source is checked equal to embed_tokens and written once
        tensors_mapped=len(set(sources.values()) | ({SOURCE_LM_HEAD_KEY} & set(source.tensors))),
        source_tensors=len(source.tensors),
        dropped_tensors=dropped,
        parameters=sum(p.numel() for p in model.parameters()),
        tied_embeddings=bool(config.tie_word_embeddings),
        vqtoken={name: getattr(config, name) for name in config.vqtoken_setting_names()},
    )
    card = {
        "repo_id": repo_id or f"your-org/{output.name}",
        "processor": processor,
        "license": license or _source_license(source.folder) or "other",
    }
    with _folder_replacing(output) as partial:
        model.save_pretrained(str(partial), max_shard_size=max_shard_size)
        vq_processor.save_pretrained(str(partial))
        del model
        _write_model_card(partial, report, source, config, revision, **card)
        if verify:
            report.verification = verify_converted_folder(
                partial,
                weights_dtype,
                source.folder,
                {key: [source.origin[source_key], source_key] for key, source_key in sources.items()},
                block_modules=verify_block_modules,
            )
        else:
            report.verification = {"status": "skipped"}
        report.files = file_manifest(partial)
        (partial / REPORT_FILE).write_text(report.to_json() + "\n")
    logger.info("Converted %s into %s", checkpoint, output)
    return report


@dataclass
class SourceCheckpoint:
    """The released checkpoint as read: its folder, config.json, tensors (and the file of each), and tower sizes."""

    folder: Path
    config: dict
    tensors: dict[str, torch.Tensor]
    origin: dict[str, str]
    tower: str
    vision_fields: dict
    kept_layers: int | None
    vision_description: str


def read_source(checkpoint: str, revision: str | None, token, vision_config: str | None) -> SourceCheckpoint:
    """Reads the released checkpoint (folder or Hub id) and the sizes of its SigLIP tower."""
    folder = resolve_folder(checkpoint, revision, token, ["*.json", "*.safetensors", "*.md", "pytorch_model*.bin"])
    config = read_json(folder / "config.json", "config.json")
    tower = config.get("mm_vision_tower")
    if not tower:
        raise ConversionError(f"{folder / 'config.json'} names no mm_vision_tower: not a LLaVA checkpoint?")
    vision_fields, kept_layers, vision_description = load_vision_config(vision_config, tower, token=token)
    tensors, origin = read_checkpoint(folder)
    return SourceCheckpoint(folder, config, tensors, origin, tower, vision_fields, kept_layers, vision_description)


def build_model(config, tensors: dict[str, torch.Tensor], dtype: torch.dtype):
    """
    The converted model, its weights assigned from the renamed source tensors.

    Returns:
        `(model, sources, dropped)`: `sources[our_key]` is the source tensor each weight came from, `dropped` the
        source tensors the model does not use by design.
    """
    from ..modeling.modeling_vqtoken_llava_onevision import VQTokenLlavaOnevisionForConditionalGeneration

    with torch.device("meta"):
        model = VQTokenLlavaOnevisionForConditionalGeneration(config)
    shapes = {key: value.shape for key, value in model.state_dict().items()}
    state, sources, dropped = map_state_dict(tensors, shapes, config.tie_word_embeddings, dtype)
    model.load_state_dict(state, strict=True, assign=True)
    if config.tie_word_embeddings:
        model.tie_weights()
    return model, sources, dropped


def _write_model_card(
    folder: Path,
    report: ConversionReport,
    source: SourceCheckpoint,
    config,
    revision,
    *,
    repo_id: str,
    processor: str,
    license: str,
):
    from ..model_card import model_card

    (folder / "README.md").write_text(
        model_card(
            repo_id=repo_id,
            source=report.source,
            source_revision=revision,
            processor=processor,
            vision_tower=source.tower,
            dtype=report.dtype,
            parameters=report.parameters,
            config=config,
            license=license,
        )
    )


@contextlib.contextmanager
def _folder_replacing(output: Path):
    """
    A temporary sibling folder of `output` to write into; renamed to `output` (replacing it) when the block ends
    without error, removed otherwise: `output` is never left half-written.
    """
    partial = output.parent / f".{output.name}.partial-{uuid.uuid4().hex[:8]}"
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield partial
        if output.exists():
            previous = output.parent / f".{output.name}.previous-{uuid.uuid4().hex[:8]}"
            output.rename(previous)
            partial.rename(output)
            shutil.rmtree(previous)
        else:
            partial.rename(output)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def _source_license(folder: Path) -> str | None:
    """The `license:` of the source README's YAML front matter, when there is one."""
    readme = folder / "README.md"
    if not readme.is_file():
        return None
    match = re.match(r"---\s*\n(.*?)\n---", readme.read_text(errors="replace"), re.DOTALL)
    if not match:
        return None
    import yaml

    try:
        metadata = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError:
        return None
    return metadata.get("license") if isinstance(metadata, dict) else None
