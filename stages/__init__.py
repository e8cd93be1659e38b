"""Command-line entry points: ``python -m stages.stage1`` … ``stage3``."""
