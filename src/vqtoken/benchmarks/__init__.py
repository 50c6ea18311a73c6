# Copyright 2026 The VQToken for Transformers authors. Licensed under the Apache License, Version 2.0.
"""Benchmark scripts (run them as modules, e.g. `python -m vqtoken.benchmarks.kmeans_benchmark`)."""
