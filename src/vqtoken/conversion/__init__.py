# Copyright 2026 The VQToken for Transformers authors. Licensed under the Apache License, Version 2.0.
"""
Conversion of the released VQToken checkpoint (LLaVA-NeXT layout) into a self-contained Transformers folder, in small
modules: `checkpoint` reads the source, `key_map` renames its tensors, `building` makes the configuration and
processor, `verify` reloads the result in a clean process, `report` describes it, and `convert` runs the steps in
order ([`~vqtoken.conversion.convert.convert_checkpoint`]). Importing this package imports none of them.
"""
