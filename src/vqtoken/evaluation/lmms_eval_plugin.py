"""
The lmms-eval plugin of VQToken: model `vqtoken_hf`, registered through the entry-point group `lmms_eval.models`.

lmms-eval imports this module while it builds its model registry, for every run, whatever model is asked for; so it
imports nothing heavy (the `vqtoken` package is light to import; no torch, no transformers, and lmms-eval's own
`ModelManifest` only when lmms-eval calls [`manifest`]). The model classes (`vqtoken.evaluation.lmms_eval_model`) are
imported by lmms-eval from their class paths only when `vqtoken_hf` is asked for.

`vqtoken` is taken: lmms-eval ships a `vqtoken` model of its own (the authors' LLaVA-NeXT runtime, batch size 1), and
entry points are registered over built-in models.
"""

MODEL_ID = "vqtoken_hf"
CHAT_CLASS_PATH = "vqtoken.evaluation.lmms_eval_model.VQTokenChat"
SIMPLE_CLASS_PATH = "vqtoken.evaluation.lmms_eval_model.VQTokenSimple"


def manifest():
    """The `ModelManifest` of `vqtoken_hf`: the payload of the entry point (lmms-eval calls it)."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_ID, simple_class_path=SIMPLE_CLASS_PATH, chat_class_path=CHAT_CLASS_PATH)


__all__ = ["CHAT_CLASS_PATH", "MODEL_ID", "SIMPLE_CLASS_PATH", "manifest"]
