"""`python -m stages.peer --method mtunet|gazegnn|irnetv2 --config FILE [--set KEY=VALUE ...] [--resume]`."""

import sys

from gazecxr.training.cli import main

if __name__ == "__main__":
    sys.exit(main("peer"))
