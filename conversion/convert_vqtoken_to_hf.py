#!/usr/bin/env python
# Copyright 2026 The VQToken for Transformers authors. Licensed under the Apache License, Version 2.0.
"""Convert the released VQToken checkpoint into a Transformers folder (same as `vqtoken convert`).

    python conversion/convert_vqtoken_to_hf.py --checkpoint haichaozhang/VQ-Token-llava-ov-0.5b \
        --output vqtoken-0.5b-hf

Needs the `vqtoken` package installed (`pip install -e .`); see `--help` for every option.
"""

import sys

from vqtoken.commands import main


if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:]]))
