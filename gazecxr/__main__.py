"""``python -m gazecxr`` = the ``gazecxr`` command."""

import sys

from gazecxr.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
