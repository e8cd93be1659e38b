"""`python -m stages.peer --method METHOD --config FILE [--set KEY=VALUE ...] [--resume]`.

METHOD: mtunet, gazegnn, irnetv2 or a gaze mechanism (gaze_token_mask, gdvig, gaze_mtl).
"""

import sys

from gazecxr.training import cli


def main(argv: list[str] | None = None) -> int:
    """``gazecxr train peer``: parse ``argv``, train, print the registry entry; the exit status."""
    return cli.main("peer", argv)


if __name__ == "__main__":
    sys.exit(main())
