"""Pure kernels: functions of plain arrays, one chunk at a time (no dask, no xarray)."""
