"""Scale stage: many MOUS on Dask or a local process pool."""
