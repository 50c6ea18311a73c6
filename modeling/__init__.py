# Copyright 2026 The VQToken for Transformers authors. Licensed under the Apache License, Version 2.0.
"""The VQToken model code: these flat files are also what `save_pretrained` ships next to the weights."""
