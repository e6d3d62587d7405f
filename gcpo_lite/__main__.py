"""`python -m gcpo_lite ...` is the `gcpo-lite` command.

Under torchrun: `torchrun --nproc-per-node N -m gcpo_lite train ...` (see gcpo_lite/run/distributed.py)."""

import sys

from gcpo_lite.cli import main

if __name__ == "__main__":
    sys.exit(main())
