from __future__ import annotations

import numpy as np
import pytest

from dask_stemnmf._kernels.render import add_disc, airy_otf, bandlimited_sphere_window
from dask_stemnmf.physics import electron_wavelength_nm, probe_cutoff_inv_nm, probe_fwhm_nm

from . import naive


@pytest.mark.parametrize(
    ("cy", "cx", "r"), [(20.0, 20.0, 6.0), (15.3, 22.7, 4.4), (1.0, 38.5, 7.0)]
)
def test_disc_matches_supersampled_reference(cy, cx, r):
    image = np.zeros((40, 40))
    add_disc(image, cy, cx, r, 1.0)
    ref = naive.disc(image.shape, cy, cx, r)
    assert np.abs(image - ref).max() < 0.35  # one-pixel edge approximation
    assert image.sum() == pytest.approx(ref.sum(), rel=0.02)


def test_airy_otf_shape():
    q = np.linspace(0, 2, 201)
    t = airy_otf(q, 1.0)
    assert t[0] == pytest.approx(1.0)
    assert (np.diff(t) <= 1e-12).all()
    assert (t[q >= 1.0] == 0).all()


def test_sphere_window_integrates_to_the_volume_and_is_band_limited():
    step, radius, cutoff = 0.3, 1.5, 1.2
    w = bandlimited_sphere_window(128, 64.3, 63.6, radius, step, cutoff)
    assert (w >= 0).all()
    assert w.sum() * step**2 == pytest.approx(4 / 3 * np.pi * radius**3, rel=1e-3)
    spectrum = np.abs(np.fft.fft2(w)) ** 2
    q = np.hypot(*np.meshgrid(np.fft.fftfreq(128, step), np.fft.fftfreq(128, step), indexing="ij"))
    assert spectrum[q > cutoff].sum() / spectrum.sum() < 1e-6
    cy, cx = np.unravel_index(np.argmax(w), w.shape)
    assert (cy, cx) == (64, 64)


def test_electron_optics():
    assert electron_wavelength_nm(200) == pytest.approx(2.5079e-3, rel=1e-4)
    assert electron_wavelength_nm(300) == pytest.approx(1.9687e-3, rel=1e-4)
    assert probe_cutoff_inv_nm(200, 1.5) * probe_fwhm_nm(200, 1.5) == pytest.approx(1.028)
    with pytest.raises(ValueError, match="positive"):
        electron_wavelength_nm(0)
