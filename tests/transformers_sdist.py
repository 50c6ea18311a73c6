"""
Transformers' own common model tests (`ModelTesterMixin`, `ConfigTester`), taken from the source distribution of the
installed transformers version at test time.

The sdist on PyPI ships `tests/test_modeling_common.py` and `tests/test_configuration_common.py`, but not three modules
they import: `tests/exporters/test_export.py` (`ExportTesterMixin`, the base of `ModelTesterMixin`),
`tests/generation/test_utils.py` (`GenerationTesterMixin`) and `tests/utils/test_configuration_utils.py`
(`config_common_kwargs`). They are stood in for here (`STAND_INS`): the export and generate tests therefore do not
run, and anything that reads `config_common_kwargs` fails loudly instead of testing nothing.

The two files are extracted once per version into `.cache/transformers-sdist-tests/<version>/` (git-ignored) and
imported as the package `transformers_sdist_tests`, a name that cannot clash with this repository's `tests/` folder.
"""

import importlib
import subprocess
import sys
import tarfile
import tempfile
import types
from pathlib import Path

import transformers


PACKAGE = "transformers_sdist_tests"
SDIST_FILES = ("tests/test_modeling_common.py", "tests/test_configuration_common.py")
CACHE_ROOT = Path(__file__).resolve().parents[1] / ".cache"
PIP_TIMEOUT_SECONDS = 600


class TransformersTestsUnavailable(RuntimeError):
    """The sdist of the installed transformers could not be fetched (no registry) or lacks the expected files."""


class _NotInSdist(dict):
    """Stands in for `config_common_kwargs`: any use raises, so no check silently runs on an empty dict."""

    def _missing(self, *args, **kwargs):
        raise RuntimeError("`config_common_kwargs` (tests/utils/test_configuration_utils.py) is not in the sdist.")

    __iter__ = __getitem__ = items = keys = values = __len__ = __deepcopy__ = __copy__ = _missing


def _stand_in(name: str, **attributes) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    return module


STAND_INS = {
    "exporters": {},
    "exporters.test_export": {"ExportTesterMixin": type("ExportTesterMixin", (), {})},
    "generation": {},
    "generation.test_utils": {"GenerationTesterMixin": type("GenerationTesterMixin", (), {})},
    "utils": {},
    "utils.test_configuration_utils": {"config_common_kwargs": _NotInSdist()},
}


def sdist_tests_folder(version: str = transformers.__version__) -> Path:
    """
    The folder holding the common test files of transformers `version`, fetched with `pip download` on first use.

    Raises:
        [`TransformersTestsUnavailable`]: pip could not fetch the sdist, or it lacks one of `SDIST_FILES`.
    """
    folder = CACHE_ROOT / "transformers-sdist-tests" / version / PACKAGE
    if (folder / "__init__.py").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as scratch:
        command = [
            sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
            f"transformers=={version}", "--dest", scratch,
        ]  # fmt: skip
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            raise TransformersTestsUnavailable(
                f"`pip download transformers=={version}` (sdist) took over {PIP_TIMEOUT_SECONDS} s"
            ) from None
        archives = list(Path(scratch).glob(f"transformers-{version}.tar.gz"))
        if result.returncode != 0 or not archives:
            raise TransformersTestsUnavailable(
                f"`pip download transformers=={version}` (sdist) failed: {result.stderr.strip()[-800:]}"
            )
        staged = Path(scratch) / PACKAGE
        staged.mkdir()
        with tarfile.open(archives[0]) as archive:
            for relative in SDIST_FILES:
                try:
                    member = archive.getmember(f"transformers-{version}/{relative}")
                except KeyError:
                    message = f"The transformers {version} sdist has no {relative}."
                    raise TransformersTestsUnavailable(message) from None
                (staged / Path(relative).name).write_bytes(archive.extractfile(member).read())
        # upstream's tests/ is a package with an empty __init__.py, which the sdist leaves out (and which
        # test_configuration_common runs: `direct_transformers_import(Path(__file__).parent)`)
        (staged / "__init__.py").write_text("")
        try:
            staged.rename(folder)
        except OSError:
            if not (folder / "__init__.py").exists():
                raise
    return folder


def import_sdist_tests(module: str) -> types.ModuleType:
    """
    `transformers_sdist_tests.<module>` (e.g. `"test_modeling_common"`), with the modules missing from the sdist
    stood in for.
    """
    if PACKAGE not in sys.modules:
        folder = sdist_tests_folder()
        package = importlib.util.module_from_spec(
            importlib.util.spec_from_file_location(
                PACKAGE, folder / "__init__.py", submodule_search_locations=[str(folder)]
            )
        )
        sys.modules[PACKAGE] = package
        for name, attributes in STAND_INS.items():
            sys.modules[f"{PACKAGE}.{name}"] = _stand_in(f"{PACKAGE}.{name}", **attributes)
    return importlib.import_module(f"{PACKAGE}.{module}")
