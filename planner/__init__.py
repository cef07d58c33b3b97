"""Sizing: catalogues of GPUs and model architectures, and the analytical performance model."""
