"""``python -m samprompt``: the command line (so ``torchrun -m samprompt run ...`` works); see :mod:`samprompt.cli`."""

from __future__ import annotations

import sys

from samprompt.cli import main

if __name__ == "__main__":
    sys.exit(main())
