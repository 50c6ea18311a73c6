# Copyright 2026 The VQToken for Transformers authors. Licensed under the Apache License, Version 2.0.
"""
Verification of a converted folder in a clean process: reload it through the Auto classes with
`trust_remote_code=True` while this package and triton cannot be imported (the folder's own code must do), and
compare every tensor with the source.

[`verify_converted_folder`] runs this module as a program (`python -m vqtoken.conversion.verify SPEC.json`) and reads
the one `VQTOKEN-VERIFY {json}` line it prints. [`block_imports`] is also what tests use to load a folder as a user
without the package would.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .report import ConversionError


RESULT_PREFIX = "VQTOKEN-VERIFY "


def block_imports(names) -> None:
    """
    Makes `import name` (and of its submodules) fail from now on in this process, as if the packages were not
    installed: their loaded modules are forgotten, their entries in `sys.modules` set to `None`, and import hooks they
    installed removed.
    """
    names = tuple(names)
    prefixes = tuple(f"{name}." for name in names)
    for module in list(sys.modules):
        if module in names or module.startswith(prefixes):
            del sys.modules[module]
    for name in names:
        sys.modules[name] = None
    sys.meta_path[:] = [finder for finder in sys.meta_path if not type(finder).__module__.startswith(names)]


def verify_converted_folder(
    folder: str | os.PathLike,
    dtype=None,
    source_folder: str | os.PathLike | None = None,
    sources: dict | None = None,
    block_modules=("vqtoken",),
    timeout: float = 1800,
) -> dict:
    """
    Reloads `folder` through the Auto classes with `trust_remote_code=True` in a fresh Python process in which
    `block_modules` cannot be imported, and, when `sources` (`{our_key: [source_file, source_key]}`) is given, compares
    every tensor with the source. Raises [`ConversionError`] on any difference; returns what the process reported.
    """
    folder = Path(folder).resolve()
    if dtype is None:
        dtype = json.loads((folder / "config.json").read_text()).get("dtype") or "float32"
    with tempfile.TemporaryDirectory(prefix="vqtoken-verify-") as scratch:
        spec = {
            "folder": str(folder),
            "dtype": str(dtype).replace("torch.", ""),
            "block_modules": list(block_modules),
            "source_folder": str(Path(source_folder).resolve()) if source_folder else None,
            "sources": sources,
        }
        spec_file = Path(scratch) / "spec.json"
        spec_file.write_text(json.dumps(spec))
        environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(Path(scratch) / "modules")}
        process = subprocess.run(
            [sys.executable, "-m", __name__, str(spec_file)],
            cwd=scratch,
            env=environment,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    lines = [line for line in process.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if process.returncode != 0 or not lines:
        raise ConversionError(
            f"Reloading {folder} with trust_remote_code=True in a clean process failed:\n{process.stderr[-4000:]}"
        )
    result = json.loads(lines[-1][len(RESULT_PREFIX) :])
    if result["problems"]:
        raise ConversionError(f"Verification of {folder} failed:\n  - " + "\n  - ".join(result["problems"][:50]))
    if "transformers_modules" not in result["model_class"]:
        raise ConversionError(f"The reload did not use the folder's remote code ({result['model_class']}).")
    result["status"] = "passed"
    return result


def check_folder(spec: dict) -> dict:
    """What the clean process reports on the folder of `spec` (see [`verify_converted_folder`])."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    torch.set_num_threads(1)
    folder, dtype = spec["folder"], getattr(torch, spec["dtype"])
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    model, info = AutoModelForImageTextToText.from_pretrained(
        folder, trust_remote_code=True, dtype=dtype, output_loading_info=True
    )
    problems = [f"{key}: {sorted(value)}" for key, value in info.items() if key != "error_msgs" and value]
    problems += list(info["error_msgs"])
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    if (processor.vqtoken_mode, processor.vqtoken_max_clusters) != (config.vqtoken_mode, config.vqtoken_max_clusters):
        problems.append("processor VQ settings differ from config.json")
    for kind in ("image", "video"):
        token = getattr(processor, f"{kind}_token")
        if processor.tokenizer.convert_tokens_to_ids(token) != getattr(config, f"{kind}_token_id"):
            problems.append(f"{kind} token id of the processor differs from config.json")
    state = model.state_dict()
    compared = 0
    if spec.get("sources") is not None:
        read = _source_reader(Path(spec["source_folder"]))
        extra = sorted(set(state) - set(spec["sources"]))
        if extra:
            problems.append(f"reloaded model has tensors without a source: {extra}")
        for key, (file, source_key) in sorted(spec["sources"].items()):
            if key not in state:
                problems.append(f"{key} missing after reload")
                continue
            expected = read(file, source_key).to(dtype)
            if (
                state[key].dtype != dtype
                or state[key].shape != expected.shape
                or not torch.equal(state[key], expected)
            ):
                problems.append(f"{key} differs from source {source_key}")
            compared += 1
    return {
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "processor_class": f"{type(processor).__module__}.{type(processor).__qualname__}",
        "tensors_compared": compared,
        "tensors_loaded": len(state),
        "problems": problems,
    }


def _source_reader(source_folder: Path):
    """`read(file, key)`: one source tensor, from safetensors (opened once) or a pickle (loaded once, mmapped)."""
    import torch
    from safetensors import safe_open

    opened = {}

    def read(file: str, key: str):
        if file not in opened:
            path = str(source_folder / file)
            if file.endswith(".safetensors"):
                opened[file] = safe_open(path, framework="pt")
            else:
                opened[file] = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        handle = opened[file]
        return handle.get_tensor(key) if file.endswith(".safetensors") else handle[key]

    return read


def main(argv: list[str] | None = None) -> int:
    """`python -m vqtoken.conversion.verify SPEC.json`: prints one `VQTOKEN-VERIFY {json}` line."""
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(argv[0]).read_text())
    block_imports(spec["block_modules"])
    print(RESULT_PREFIX + json.dumps(check_folder(spec)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
