# Copyright 2026 The VQToken for Transformers authors. Licensed under the Apache License, Version 2.0.
"""Reading the released checkpoint: a local folder or a Hub download, its safetensors shards (or, only when there is no
safetensors file, its pickles through `torch.load(weights_only=True)`) and its JSON files."""

import json
import logging
from pathlib import Path

import torch

from ..files import looks_like_local_path
from .report import ConversionError


logger = logging.getLogger(__name__)


def resolve_folder(
    name_or_path: str,
    revision: str | None = None,
    token: str | bool | None = None,
    allow_patterns: list[str] | None = None,
) -> Path:
    """A local folder as-is; otherwise a Hub id downloaded with `snapshot_download` (token from the usual login)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ConversionError(f"{name_or_path!r} is a file; expected a folder or a Hub id.")
    if looks_like_local_path(name_or_path):
        raise ConversionError(f"Folder {name_or_path!r} does not exist (and it is not a Hub id).")
    from huggingface_hub import snapshot_download

    logger.info("Downloading %s (revision %s) from the Hub", name_or_path, revision or "main")
    try:
        return Path(snapshot_download(name_or_path, revision=revision, token=token, allow_patterns=allow_patterns))
    except Exception as error:  # the Hub client raises many kinds; name the id and the cause
        raise ConversionError(f"Could not download {name_or_path!r} from the Hub: {error}") from error


def read_checkpoint(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """
    All tensors of a checkpoint folder, and the file each came from.

    Reads `model.safetensors`, or the shards of `model.safetensors.index.json`; only when there is no safetensors file
    at all, `pytorch_model.bin` (or its index) through `torch.load(weights_only=True)`.
    """
    from safetensors import safe_open

    safetensors_files = sorted(folder.glob("*.safetensors"))
    index_file = folder / "model.safetensors.index.json"
    if index_file.is_file():
        weight_map = _read_index(index_file)
        files = sorted(set(weight_map.values()))
    elif safetensors_files:
        files, weight_map = [f.name for f in safetensors_files], None
    else:
        return _read_pickle_checkpoint(folder)
    tensors, origin = {}, {}
    for name in files:
        path = folder / name
        if not path.is_file():
            raise ConversionError(f"{path} is listed in model.safetensors.index.json but does not exist.")
        try:
            with safe_open(str(path), framework="pt") as handle:
                for key in handle.keys():
                    if key in tensors:
                        raise ConversionError(f"Tensor {key!r} appears in both {origin[key]} and {name}.")
                    tensors[key] = handle.get_tensor(key)
                    origin[key] = name
        except ConversionError:
            raise
        except Exception as error:
            raise ConversionError(f"Cannot read safetensors file {path} (truncated or corrupt?): {error}") from error
    if weight_map is not None:
        wrong = sorted(k for k, f in weight_map.items() if origin.get(k) != f)
        if wrong:
            raise ConversionError(f"model.safetensors.index.json does not match the shards for {wrong[:10]}.")
    return tensors, origin


def _read_index(index_file: Path) -> dict[str, str]:
    try:
        return json.loads(index_file.read_text())["weight_map"]
    except (ValueError, KeyError) as error:
        raise ConversionError(f"{index_file} is not a valid checkpoint index: {error}") from error


def _read_pickle_checkpoint(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    index_file = folder / "pytorch_model.bin.index.json"
    if index_file.is_file():
        files = sorted(set(_read_index(index_file).values()))
    elif (folder / "pytorch_model.bin").is_file():
        files = ["pytorch_model.bin"]
    else:
        raise ConversionError(f"No model.safetensors, safetensors shards or pytorch_model.bin in {folder}.")
    tensors, origin = {}, {}
    for name in files:
        logger.warning("Reading %s with torch.load(weights_only=True): prefer safetensors.", name)
        try:
            state = torch.load(folder / name, map_location="cpu", weights_only=True)
        except Exception as error:
            raise ConversionError(
                f"Cannot read {folder / name} with torch.load(weights_only=True): {error}"
            ) from error
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ConversionError(f"{folder / name} does not hold a flat dictionary of tensors.")
        for key, value in state.items():
            tensors[key] = value
            origin[key] = name
    return tensors, origin


def read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise ConversionError(f"No {what} at {path}.")
    try:
        return json.loads(path.read_text())
    except ValueError as error:
        raise ConversionError(f"{path} is not valid JSON: {error}") from error
