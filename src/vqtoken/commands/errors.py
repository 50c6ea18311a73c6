"""
The one error policy of the `vqtoken` command.

A known error (a bad video, model folder, weights file, cache file, stream input, conversion source, training
configuration or setting, a file that cannot be read or written) prints one `vqtoken: error: ...` line on stderr that
names the path and the problem, and exits with 1 (2 for a bad option). Anything else is a bug: its traceback is shown,
never disguised as a user's mistake. `--verbose` adds the traceback to known errors too.
"""

import sys
import traceback


class UsageError(Exception):
    """A bad option found after parsing (e.g. a setting the model rejects): exit code 2."""


class CommandError(Exception):
    """A failure the command itself detects (e.g. an output path that is a folder): exit code 1."""


def known_errors() -> tuple[type[BaseException], ...]:
    """The exception classes that report a user's input or environment, not a bug (imported only when needed)."""
    from ..cache import CacheError
    from ..conversion.report import ConversionError
    from ..loading import ModelLoadError
    from ..modeling.configuration_vqtoken_llava_onevision import VQTokenSettingError
    from ..modeling.video_io import VideoDecodeError
    from ..publish import PublishError
    from ..streaming import StreamError
    from ..training.config import TrainingConfigError

    return (
        CommandError,
        VideoDecodeError,
        ModelLoadError,
        VQTokenSettingError,
        CacheError,
        ConversionError,
        PublishError,
        StreamError,
        TrainingConfigError,
        OSError,
    )


def exit_code_for(error: Exception, verbose: bool = False) -> int | None:
    """Reports `error` on stderr and returns its exit code, or `None` for an error that is not a user's (a bug)."""
    if isinstance(error, UsageError):
        code = 2
    elif isinstance(error, known_errors()):
        code = 1
    else:
        return None
    if verbose:
        traceback.print_exception(error)
    print(f"vqtoken: error: {describe(error)}", file=sys.stderr)
    return code


def describe(error: BaseException) -> str:
    """One line: the message of `error`; for a file-system error, the path and the reason."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    text = str(error).strip() or type(error).__name__
    return " ".join(line.strip() for line in text.splitlines() if line.strip())
