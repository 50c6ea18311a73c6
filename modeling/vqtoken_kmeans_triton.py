# Copyright 2026 The VQToken for Transformers authors. Licensed under the Apache License, Version 2.0.
"""Triton kernels of the cosine K-means step (work in progress: see issue 3)."""

try:
    import triton  # noqa: F401

    _TRITON_AVAILABLE = True
except ImportError:
    _TRITON_AVAILABLE = False


def is_triton_available() -> bool:
    return _TRITON_AVAILABLE


def triton_assign_and_accumulate(tokens, centroids, cluster_mask):
    raise NotImplementedError("The Triton K-means kernels are not written yet.")
