"""`python -m vqtoken ...`: the `vqtoken` command (e.g. under `accelerate launch -m vqtoken train CONFIG.yaml`)."""

import sys

from .commands import main


sys.exit(main())
