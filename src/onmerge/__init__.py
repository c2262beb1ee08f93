"""Reproduction pipeline for online merging optimizers (arXiv 2405.17931)."""
