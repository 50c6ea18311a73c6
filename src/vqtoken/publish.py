# Copyright 2026 The VQToken for Transformers authors. Licensed under the Apache License, Version 2.0.
"""
Publishing a converted VQToken folder on the Hub.

A dry run is the default: it verifies the folder and lists what would be sent. With `yes=True` (`--yes`) it creates the
repository (`exist_ok`) and uploads the folder in one commit. A folder with pickle files, or one that fails
verification (files changed since conversion, or the clean remote-code reload fails), is refused.

Command line: `vqtoken push FOLDER --repo-id org/name [--yes] [--private]` (or `python conversion/push_to_hub.py`).
"""

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import HfApi

from .conversion.report import PICKLE_SUFFIXES, REPORT_FILE, ConversionError, file_manifest
from .conversion.verify import verify_converted_folder


logger = logging.getLogger(__name__)


class PublishError(ValueError):
    """The folder may not be published; the message says why."""


@dataclass
class PushPlan:
    """What a push sends (or would send in a dry run)."""

    folder: Path
    repo_id: str
    private: bool
    commit_message: str
    files: dict[str, int] = field(default_factory=dict)  # relative path -> size in bytes
    uploaded: bool = False
    commit_url: str | None = None

    def summary(self) -> str:
        lines = [
            f"{'upload to' if self.uploaded else 'dry run: would upload to'} {self.repo_id} "
            f"({'private' if self.private else 'public'}), commit {self.commit_message!r}:"
        ]
        for name, size in sorted(self.files.items()):
            lines.append(f"  {name:<48} {size:>14,d}")
        lines.append(f"  {len(self.files)} files, {sum(self.files.values()):,} bytes")
        if self.uploaded:
            lines.append(f"committed: {self.commit_url}")
        else:
            lines.append("nothing was sent; pass --yes to upload")
        return "\n".join(lines)


def check_folder(folder: Path, reload: bool = True, block_modules=("vqtoken",)) -> dict[str, int]:
    """
    Verifies a converted folder before publishing: no pickle files, every file listed with its size and sha256 in
    `conversion_report.json` and unchanged, no unlisted file, the report's own verification passed, and (with `reload`)
    a clean-process reload through the Auto classes with `trust_remote_code=True`. Returns `{file: size}`.
    """
    if not folder.is_dir():
        raise PublishError(f"{folder} is not a folder.")
    files = {p.relative_to(folder).as_posix(): p.stat().st_size for p in folder.rglob("*") if p.is_file()}
    pickles = sorted(name for name in files if name.lower().endswith(PICKLE_SUFFIXES))
    if pickles:
        raise PublishError(f"Refusing to publish pickle files: {pickles}. Publish safetensors only.")
    report_path = folder / REPORT_FILE
    if not report_path.is_file():
        raise PublishError(f"{folder} has no {REPORT_FILE}: convert it with the VQToken converter first.")
    try:
        report = json.loads(report_path.read_text())
    except ValueError as error:
        raise PublishError(f"{report_path} is not valid JSON: {error}") from error
    if report.get("verification", {}).get("status") != "passed":
        raise PublishError(
            f"The conversion of {folder} was not verified (status "
            f"{report.get('verification', {}).get('status')!r}); convert it again with verification."
        )
    recorded = report.get("files", {})
    actual = file_manifest(folder)
    changed = sorted(name for name in recorded if actual.get(name) != recorded[name])
    unlisted = sorted(set(actual) - set(recorded))
    if changed or unlisted:
        raise PublishError(
            f"{folder} differs from its conversion report: changed or missing {changed}, not listed {unlisted}."
        )
    if reload:
        try:
            verify_converted_folder(folder, block_modules=block_modules)
        except ConversionError as error:
            raise PublishError(f"{folder} fails verification: {error}") from error
    return files


def push_to_hub(
    folder,
    repo_id: str,
    *,
    yes: bool = False,
    private: bool = False,
    token: str | bool | None = None,
    commit_message: str | None = None,
    reload: bool = True,
    block_modules=("vqtoken",),
) -> PushPlan:
    """
    Verifies `folder` and, with `yes=True`, uploads it to the model repository `repo_id` in one commit; otherwise
    only returns the plan (dry run). Raises [`PublishError`] when the folder may not be published.
    """
    folder = Path(folder).expanduser().resolve()
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise PublishError(f"--repo-id must be 'org/name', got {repo_id!r}.")
    files = check_folder(folder, reload=reload, block_modules=block_modules)
    readme = folder / "README.md"
    if readme.is_file() and repo_id not in readme.read_text(errors="replace"):
        logger.warning(
            "The model card's examples do not mention %s (convert with --repo-id %s to fix them).", repo_id, repo_id
        )
    plan = PushPlan(
        folder=folder,
        repo_id=repo_id,
        private=private,
        commit_message=commit_message or f"Upload VQToken checkpoint converted for Transformers ({folder.name})",
        files=files,
    )
    if not yes:
        return plan
    api = HfApi(token=token)
    api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
    commit = api.upload_folder(
        folder_path=str(folder),
        repo_id=repo_id,
        repo_type="model",
        commit_message=plan.commit_message,
        allow_patterns=sorted(files),
    )
    plan.uploaded = True
    plan.commit_url = str(getattr(commit, "commit_url", commit))
    logger.info("Uploaded %d files to %s", len(files), repo_id)
    return plan


__all__ = ["PublishError", "PushPlan", "check_folder", "push_to_hub"]
