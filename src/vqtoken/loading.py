"""
The one way the package turns a name into a model and its processor.

Commands, training, evaluation, examples and the demo all load through [`load_model_and_processor`], so that a setting
given by the user is validated the same way everywhere and the processor writes the placeholder count of the mode
and K the model really uses. The number of frames a model expects travels with its folder (the video processor's
`num_frames`, read as `processor.default_num_frames`).

Three kinds of source are accepted: `None` (the built-in default model shipped in the package), a VQToken folder or
Hub id, and a stock LLaVA-OneVision checkpoint (its weights in a VQToken model; the VQ-Attention starts from its
initialisation).
"""

import logging
from importlib import resources
from pathlib import Path

import torch

from .files import looks_like_local_path


logger = logging.getLogger(__name__)

DEFAULT_MODEL_LABEL = "built-in default: a small model trained on synthetic clips of sliding shapes"


class ModelLoadError(ValueError):
    """A model folder or Hub id that cannot be loaded (missing, unreadable or not a VQToken / OneVision model);
    the message names it and the problem."""


STOCK_MODEL_TYPE = "llava_onevision"


def default_model_dir() -> Path:
    """The folder of the built-in default model inside the installed package."""
    return Path(str(resources.files("vqtoken") / "assets" / "default-model"))


def resolve_device(device: str | torch.device | None) -> torch.device:
    """`None` or `"auto"`: CUDA when available, else the CPU. Raises `ValueError` for an unknown or absent device."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"Unknown device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'.") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"Device {device!r} asked for, but CUDA is not available on this machine.")
    return resolved


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """`None` or `"auto"`: bfloat16 on CUDA, float32 elsewhere; otherwise a `torch.dtype` or one of `DTYPES`."""
    if dtype is None or dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"Unknown dtype {dtype!r}: use 'auto' or one of {sorted(DTYPES)}.")
    return DTYPES[dtype]


def sync_processor(processor, config):
    """Makes `processor` write the video placeholder count of `config`'s mode and largest K."""
    processor.vqtoken_mode = config.vqtoken_mode
    processor.vqtoken_max_clusters = config.vqtoken_max_clusters
    return processor


def load_model_and_processor(
    name_or_path: str | Path | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    attn_implementation: str | None = None,
    **vqtoken_settings,
):
    """
    A VQToken model in eval mode and its processor.

    Args:
        name_or_path: a VQToken folder or Hub id, a stock LLaVA-OneVision folder or Hub id, or `None` for the built-in
            default model.
        device: `"auto"` (default), `"cpu"`, `"cuda"`, `"cuda:1"`, ... or a `torch.device`.
        dtype: `"auto"` (default: bfloat16 on CUDA, float32 elsewhere), `"float32"`, `"bfloat16"`, `"float16"` or a
            `torch.dtype`.
        attn_implementation: the attention kernels of the towers (`"sdpa"`, `"eager"`, `"flash_attention_2"`, ...);
            `None` lets transformers choose.
        **vqtoken_settings: `vqtoken_*` fields overriding the folder's configuration, validated with the
            configuration's own messages (`ValueError` naming the field).

    Returns:
        `(model, processor)`; the processor's placeholder counts follow the model's mode and K.
    """
    from transformers import AutoConfig, AutoProcessor

    from . import VQTokenLlavaOnevisionConfig, VQTokenLlavaOnevisionForConditionalGeneration
    from .modeling.processing_vqtoken_llava_onevision import VQTokenLlavaOnevisionProcessor

    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    if name_or_path is None:
        name_or_path = default_model_dir()
        if not (name_or_path / "model.safetensors").is_file():
            raise FileNotFoundError(f"The built-in default model is missing from {name_or_path}; reinstall vqtoken.")
    elif looks_like_local_path(str(name_or_path)) and not Path(name_or_path).expanduser().is_dir():
        raise ModelLoadError(f"model folder not found: {name_or_path}")
    source_config = _read(name_or_path, "its configuration", lambda: AutoConfig.from_pretrained(name_or_path))
    if isinstance(source_config, VQTokenLlavaOnevisionConfig):
        config = source_config.with_vqtoken_settings(**vqtoken_settings)
        processor = _read(name_or_path, "its processor", lambda: AutoProcessor.from_pretrained(name_or_path))
    elif source_config.model_type == STOCK_MODEL_TYPE:
        config = VQTokenLlavaOnevisionConfig.from_onevision_config(source_config, **vqtoken_settings)
        logger.info("Loading stock LLaVA-OneVision %s: the VQ-Attention starts from its initialisation.", name_or_path)
        stock = _read(name_or_path, "its processor", lambda: AutoProcessor.from_pretrained(name_or_path))
        processor = VQTokenLlavaOnevisionProcessor.from_onevision_processor(stock)
    else:
        raise ModelLoadError(
            f"{name_or_path} holds a {source_config.model_type!r} model; expected a VQToken model "
            f"({VQTokenLlavaOnevisionConfig.model_type!r}) or a stock LLaVA-OneVision one ({STOCK_MODEL_TYPE!r})."
        )
    model = _read(
        name_or_path,
        "its weights",
        lambda: VQTokenLlavaOnevisionForConditionalGeneration.from_pretrained(
            name_or_path, config=config, dtype=dtype, attn_implementation=attn_implementation
        ),
        file_errors=(OSError,),
    )
    model = model.to(device).eval()
    return model, sync_processor(processor, model.config)


def _read(name_or_path, what: str, load, file_errors=(OSError, ValueError)):
    """
    `load()`, with the file problems transformers and safetensors raise (`file_errors` and corrupt safetensors)
    reported as [`ModelLoadError`]; anything else propagates as it is.
    """
    from safetensors import SafetensorError

    from .modeling.configuration_vqtoken_llava_onevision import VQTokenSettingError

    try:
        return load()
    except VQTokenSettingError:
        raise
    except SafetensorError as error:
        raise ModelLoadError(
            f"cannot load {what} from {name_or_path}: a weights file is truncated or corrupt ({error})"
        ) from error
    except file_errors as error:
        problem = " ".join(str(error).split()) or type(error).__name__
        raise ModelLoadError(f"cannot load {what} from {name_or_path}: {problem}") from error


__all__ = [
    "DEFAULT_MODEL_LABEL",
    "ModelLoadError",
    "default_model_dir",
    "load_model_and_processor",
    "resolve_device",
    "resolve_dtype",
    "sync_processor",
]
