# Copyright 2026 The VQToken for Transformers authors. Licensed under the Apache License, Version 2.0.
"""
The allowed values of the VQToken settings that are choices, as `Literal` types. The configuration declares its fields
with them, and everything else (the command line, the K-means module) reads them from here with `typing.get_args`: one
list, in a module light enough to import without transformers.
"""

from typing import Literal, get_args


VQTokenMode = Literal["attention", "centroids", "off"]
VQTokenSelectionMethod = Literal["fixed", "elbow", "elbow_corrected", "silhouette"]
VQTokenKMeansBackend = Literal["auto", "torch", "triton"]

VQTOKEN_MODES = get_args(VQTokenMode)
VQTOKEN_SELECTION_METHODS = get_args(VQTokenSelectionMethod)
VQTOKEN_KMEANS_BACKENDS = get_args(VQTokenKMeansBackend)

__all__ = [
    "VQTOKEN_KMEANS_BACKENDS",
    "VQTOKEN_MODES",
    "VQTOKEN_SELECTION_METHODS",
    "VQTokenKMeansBackend",
    "VQTokenMode",
    "VQTokenSelectionMethod",
]
