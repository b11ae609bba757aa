"""Packaging stage: staff reduction areas and deterministic delivery tarballs."""
