"""Command-line converters from raw datasets to the HDF5 contract, and the synthetic generator."""
