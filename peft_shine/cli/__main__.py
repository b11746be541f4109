"""`python -m peft_shine.cli` (e.g. under `torchrun`): the `peft-shine` console script."""

import sys

from . import main

main(sys.argv[1:])
