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


# The known error classes, each by the module that defines it. An exception can only be raised once its class's module
# has been imported, so only the modules already loaded are looked at: reporting an error found before the model was
# loaded does not import torch and transformers.
KNOWN_ERRORS = (
    ("vqtoken.modeling.video_io", "VideoDecodeError"),
    ("vqtoken.loading", "ModelLoadError"),
    ("vqtoken.modeling.configuration_vqtoken_llava_onevision", "VQTokenSettingError"),
    ("vqtoken.modeling.vqtoken_video_cache", "CacheError"),
    ("vqtoken.conversion.report", "ConversionError"),
    ("vqtoken.publish", "PublishError"),
    ("vqtoken.streaming", "StreamError"),
    ("vqtoken.training.config", "TrainingConfigError"),
)


def known_errors() -> tuple[type[BaseException], ...]:
    """The exception classes that report a user's input or environment, not a bug."""
    loaded = tuple(getattr(sys.modules[module], name) for module, name in KNOWN_ERRORS if module in sys.modules)
    return (CommandError, OSError, *loaded)


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
