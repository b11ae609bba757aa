"""Delivery tree stage: the standard layout, its parsers and the validator."""
