"""Benchmarks of gazecxr's performance work; ``python -m bench`` runs them all (``--help``)."""
