"""
Ask questions about videos with a VQToken model, stage by stage, with the time of each stage.

The one implementation lives in `modeling/vqtoken_inference.py` (`vqtoken.modeling.vqtoken_inference`), because the
`video-text-to-text` pipeline, which ships with the model code for `trust_remote_code`, runs on it. This module
re-exports it for users; the package's own code imports the implementation.
"""

from .modeling.vqtoken_inference import *  # noqa: F403
from .modeling.vqtoken_inference import __all__  # noqa: F401
