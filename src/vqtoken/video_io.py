"""
Video loading for VQToken: [`load_video`] samples frames from files (PyAV), file objects and frame arrays.

The one implementation lives in `modeling/video_io.py` (`vqtoken.modeling.video_io`), because it also ships with the
model code for `trust_remote_code` (the `video-text-to-text` pipeline decodes paths with it). This module re-exports it
for users; the package's own code imports the implementation.
"""

from .modeling.video_io import *  # noqa: F403
from .modeling.video_io import __all__  # noqa: F401
