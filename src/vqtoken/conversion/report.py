# Copyright 2026 The VQToken for Transformers authors. Licensed under the Apache License, Version 2.0.
"""What a conversion produced, its errors, and the file manifest that `push` checks again before publishing."""

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..files import hash_stream


REPORT_FILE = "conversion_report.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


class ConversionError(ValueError):
    """The checkpoint, its configuration or the processor cannot be converted; the message says what and why."""


@dataclass
class ConversionReport:
    """What a conversion produced: written as `conversion_report.json` and printed by the command line."""

    source: str
    source_revision: str | None
    source_files: list[str]
    processor: str
    vision_tower: str
    dtype: str
    tensors_mapped: int
    source_tensors: int
    dropped_tensors: list[str]
    parameters: int
    tied_embeddings: bool
    vqtoken: dict
    files: dict = field(default_factory=dict)  # relative path -> {"size": bytes, "sha256": hex}
    verification: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    def summary(self) -> str:
        lines = [
            f"source            {self.source}" + (f" @ {self.source_revision}" if self.source_revision else ""),
            f"processor         {self.processor}",
            f"vision tower      {self.vision_tower}",
            f"tensors mapped    {self.tensors_mapped} of {self.source_tensors} source tensors"
            + (" (lm_head tied to embed_tokens)" if self.tied_embeddings else ""),
            f"tensors dropped   {len(self.dropped_tensors)}"
            + (
                f" (not used by the model by design: {', '.join(self.dropped_tensors)})"
                if self.dropped_tensors
                else ""
            ),
            f"parameters        {self.parameters:,}",
            f"dtype             {self.dtype}",
            "vqtoken           " + ", ".join(f"{k}={v}" for k, v in sorted(self.vqtoken.items())),
            f"verification      {self.verification.get('status', 'not run')}"
            + (
                f" ({self.verification['tensors_compared']} tensors compared after a clean remote-code reload)"
                if "tensors_compared" in self.verification
                else ""
            ),
            "files:",
        ]
        for name, info in sorted(self.files.items()):
            lines.append(f"  {name:<48} {info['size']:>14,d}  sha256 {info['sha256']}")
        return "\n".join(lines)


def file_manifest(folder: Path, exclude=(REPORT_FILE,)) -> dict:
    """`{relative path: {"size", "sha256"}}` of every file under `folder`."""
    manifest = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        if name in exclude:
            continue
        with open(path, "rb") as handle:
            digest = hash_stream(hashlib.sha256(), handle)
        manifest[name] = {"size": path.stat().st_size, "sha256": digest.hexdigest()}
    return manifest
