"""
VQToken for Transformers: extreme video-token reduction for LLaVA-OneVision.

`import vqtoken` makes a VQToken folder or Hub repository load through transformers' Auto classes without
`trust_remote_code`, and registers the `video-text-to-text` pipeline task. Importing the package is light: it neither
imports torch nor transformers (the `vqtoken` command starts fast). The classes are registered on first use: when
transformers is imported (at once if it already is), or when a class of this package is first accessed.
"""

import importlib
import importlib.abc
import importlib.util
import sys


__version__ = "0.1.0"

SUPPORTED_TRANSFORMERS = ">=5.18,<5.25"

# public name -> the module that defines it
_EXPORTS = {
    "VQTokenLlavaOnevisionConfig": "configuration_vqtoken_llava_onevision",
    "VQTokenSettingError": "configuration_vqtoken_llava_onevision",
    "VQTokenLlavaOnevisionForConditionalGeneration": "modeling_vqtoken_llava_onevision",
    "VQTokenLlavaOnevisionModel": "modeling_vqtoken_llava_onevision",
    "VQTokenVideoOutput": "modeling_vqtoken_llava_onevision",
    "VQTokenLlavaOnevisionProcessor": "processing_vqtoken_llava_onevision",
    "VQTokenVideoTextToTextPipeline": "pipeline_vqtoken_llava_onevision",
    "VideoQuantization": "vqtoken_kmeans",
    "quantize_video_tokens": "vqtoken_kmeans",
}

__all__ = sorted(_EXPORTS)

_registered = False


def register():
    """
    Registers the VQToken configuration, model and processor with transformers' Auto classes and the
    `video-text-to-text` task with its pipeline registry. Idempotent; runs by itself on first use (see the module
    docstring).
    """
    global _registered
    if _registered:
        return
    _registered = True
    import transformers
    from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText, AutoProcessor
    from transformers.pipelines import PIPELINE_REGISTRY

    from .modeling.configuration_vqtoken_llava_onevision import VQTokenLlavaOnevisionConfig
    from .modeling.modeling_vqtoken_llava_onevision import VQTokenLlavaOnevisionForConditionalGeneration
    from .modeling.pipeline_vqtoken_llava_onevision import VIDEO_PIPELINE_TASK, VQTokenVideoTextToTextPipeline
    from .modeling.processing_vqtoken_llava_onevision import VQTokenLlavaOnevisionProcessor

    model_class = VQTokenLlavaOnevisionForConditionalGeneration
    AutoConfig.register(VQTokenLlavaOnevisionConfig.model_type, VQTokenLlavaOnevisionConfig, exist_ok=True)
    auto_model_classes = [AutoModel, AutoModelForImageTextToText]
    if hasattr(transformers, "AutoModelForMultimodalLM"):
        auto_model_classes.append(transformers.AutoModelForMultimodalLM)
    for auto_class in auto_model_classes:
        auto_class.register(VQTokenLlavaOnevisionConfig, model_class, exist_ok=True)
    AutoProcessor.register(VQTokenLlavaOnevisionConfig, VQTokenLlavaOnevisionProcessor, exist_ok=True)
    PIPELINE_REGISTRY.register_pipeline(
        VIDEO_PIPELINE_TASK,
        pipeline_class=VQTokenVideoTextToTextPipeline,
        pt_model=AutoModelForImageTextToText,
        type="multimodal",
    )


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vqtoken' has no attribute {name!r}")
    register()
    value = getattr(importlib.import_module(f".modeling.{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


class _RegisterOnFirstUse(importlib.abc.MetaPathFinder):
    """
    Calls [`register`] as soon as transformers is imported and none of this package's model modules is half-way
    through its own import: those modules import transformers, and registering needs them whole. It watches the
    imports of `transformers` and of `vqtoken.modeling.*`, and leaves `sys.meta_path` once registration is done.
    """

    def __init__(self):
        self.executing = 0

    def find_spec(self, name, path, target=None):
        if name != "transformers" and not name.startswith(f"{__name__}.modeling."):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None:
            spec.loader = _WatchedLoader(spec.loader, self, counts=name != "transformers")
        return spec

    def imported(self):
        if "transformers" in sys.modules and self.executing == 0:
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            register()


class _WatchedLoader(importlib.abc.Loader):
    """The real loader of a watched module; reports to the finder when the module has executed."""

    def __init__(self, original, finder: _RegisterOnFirstUse, counts: bool):
        self.original, self.finder, self.counts = original, finder, counts

    def create_module(self, spec):
        return self.original.create_module(spec)

    def exec_module(self, module):
        module.__spec__.loader = module.__loader__ = self.original
        self.finder.executing += self.counts
        try:
            self.original.exec_module(module)
        finally:
            self.finder.executing -= self.counts
        self.finder.imported()


if "transformers" in sys.modules:
    register()
elif not any(isinstance(finder, _RegisterOnFirstUse) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterOnFirstUse())
