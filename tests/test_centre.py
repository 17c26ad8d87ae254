from __future__ import annotations

import dask
import numpy as np
import pytest

from dask_stemnmf import InputError, beam_centre, simulate_scan


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_direct_beam_centre_is_found_to_a_small_fraction_of_a_pixel(seed, raise_if_dask_computes):
    ds = simulate_scan(scan=(16, 16), detector=(64, 64), precipitates=3, seed=seed).persist()
    true = np.array(ds.attrs["beam_centre_px"])
    assert np.abs(np.array(beam_centre(ds)) - true).max() < 0.05
    with dask.config.set(scheduler=raise_if_dask_computes):
        lazy = beam_centre(ds, per_pattern=True)
    per = lazy.values
    assert per.shape == (16, 16, 2)
    assert np.abs(per - true).max() < 0.15  # each noisy pattern (5,000 e) on its own


def test_centre_refuses_what_it_cannot_do():
    ds = simulate_scan(scan=(4, 4), detector=(16, 16), precipitates=1, seed=0)
    with pytest.raises(InputError, match="level"):
        beam_centre(ds, level=1.5)
    with pytest.raises(InputError, match="all zero"):
        beam_centre(ds.assign(intensity=ds["intensity"] * 0))
