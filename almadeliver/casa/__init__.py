"""CASA stage: the offline runtime, restore, native pipeline restore, imaging."""
