"""`python -m stages.stage1 --config FILE [--set KEY=VALUE ...] [--resume]`."""

import sys

from gazecxr.training import cli


def main(argv: list[str] | None = None) -> int:
    """``gazecxr train stage1``: parse ``argv``, train, print the registry entry; the exit status."""
    return cli.main("stage1", argv)


if __name__ == "__main__":
    sys.exit(main())
