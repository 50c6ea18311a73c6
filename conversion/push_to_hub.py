#!/usr/bin/env python
# Copyright 2026 The VQToken for Transformers authors. Licensed under the Apache License, Version 2.0.
"""Publish a converted VQToken folder on the Hub (same as `vqtoken push`). A dry run unless `--yes` is given.

python conversion/push_to_hub.py vqtoken-0.5b-hf --repo-id org/name          # lists files and sizes
python conversion/push_to_hub.py vqtoken-0.5b-hf --repo-id org/name --yes    # uploads
"""

import sys

from vqtoken.commands import main


if __name__ == "__main__":
    sys.exit(main(["push", *sys.argv[1:]]))
