"""Rendering of diffraction-pattern ingredients and band-limited maps (pure numpy).

Lengths on the detector are in pixels, on the scan in scan pixels; physical units are
converted by the callers.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "add_disc",
    "airy_otf",
    "bandlimited_sphere_window",
    "convolve_same",
    "detector_psf",
    "gaussian_kernel",
    "radial_profile_image",
]


def add_disc(
    image: np.ndarray, centre_y: float, centre_x: float, radius: float, weight: float
) -> None:
    """Add an anti-aliased uniform disc to ``image`` in place.

    Parameters
    ----------
    image
        ``(k_y, k_x)`` float64 image, modified in place.
    centre_y, centre_x
        Disc centre in pixels (sub-pixel; may lie outside the image).
    radius
        Disc radius in pixels.
    weight
        Value inside the disc; the edge pixels get their covered fraction.
    """
    ny, nx = image.shape
    y0 = max(0, int(np.floor(centre_y - radius - 1)))
    y1 = min(ny, int(np.ceil(centre_y + radius + 2)))
    x0 = max(0, int(np.floor(centre_x - radius - 1)))
    x1 = min(nx, int(np.ceil(centre_x + radius + 2)))
    if y0 >= y1 or x0 >= x1:
        return
    yy = np.arange(y0, y1)[:, None] - centre_y
    xx = np.arange(x0, x1)[None, :] - centre_x
    coverage = np.clip(radius + 0.5 - np.hypot(yy, xx), 0.0, 1.0)
    image[y0:y1, x0:x1] += weight * coverage


def radial_profile_image(
    shape: tuple[int, int], centre_y: float, centre_x: float, profile: np.ndarray, step: float
) -> np.ndarray:
    """Evaluate a radial profile sampled every ``step`` pixels on an image grid.

    Parameters
    ----------
    shape
        ``(k_y, k_x)`` image shape.
    centre_y, centre_x
        Centre in pixels.
    profile
        ``(n,)`` values at radii ``0, step, 2 step, ...`` pixels; linear interpolation,
        zero beyond the last sample.
    step
        Radial sampling of ``profile`` in pixels.

    Returns
    -------
    numpy.ndarray
        ``shape`` float64 image.
    """
    yy = np.arange(shape[0])[:, None] - centre_y
    xx = np.arange(shape[1])[None, :] - centre_x
    r = np.hypot(yy, xx) / step
    return np.interp(r, np.arange(profile.size), profile, right=0.0)


def airy_otf(q: np.ndarray, cutoff: float) -> np.ndarray:
    """Incoherent transfer function of a circular aperture (the "chat" function).

    Parameters
    ----------
    q
        Spatial frequencies, any shape, in the same units as ``cutoff``.
    cutoff
        Frequency at which the transfer reaches zero (``2 alpha / lambda`` for a probe).

    Returns
    -------
    numpy.ndarray
        Transfer in [0, 1], 1 at ``q = 0`` and exactly 0 at and beyond ``cutoff``.
    """
    nu = np.clip(np.abs(q) / cutoff, 0.0, 1.0)
    return (2.0 / np.pi) * (np.arccos(nu) - nu * np.sqrt(1.0 - nu * nu))


def bandlimited_sphere_window(
    size: int, offset_y: float, offset_x: float, radius: float, step: float, cutoff: float
) -> np.ndarray:
    """Projected thickness of a sphere seen through an incoherent probe, on a window.

    The sphere's projected thickness ``2 sqrt(R^2 - r^2)`` is multiplied, in Fourier space,
    by the probe's transfer function :func:`airy_otf`, so the result is band-limited to
    ``cutoff`` and non-negative (the probe intensity is non-negative). Sub-pixel centres are
    exact (a phase ramp).

    Parameters
    ----------
    size
        Window side in scan pixels (use a power of two well beyond the sphere and the probe).
    offset_y, offset_x
        Sphere centre in pixels from the window's origin.
    radius
        Sphere radius in nm.
    step
        Scan step in nm.
    cutoff
        Probe cutoff frequency in cycles per nm.

    Returns
    -------
    numpy.ndarray
        ``(size, size)`` float64 thickness in nm.
    """
    q1 = np.fft.fftfreq(size, d=step)
    qy, qx = q1[:, None], q1[None, :]
    q = np.hypot(qy, qx)
    x = 2.0 * np.pi * q * radius
    with np.errstate(invalid="ignore", divide="ignore"):
        shape = np.where(x > 1e-6, 3.0 * (np.sin(x) - x * np.cos(x)) / x**3, 1.0)
    volume = 4.0 / 3.0 * np.pi * radius**3
    phase = np.exp(-2j * np.pi * (qy * offset_y * step + qx * offset_x * step))
    spectrum = volume * shape * airy_otf(q, cutoff) * phase
    window = np.fft.ifft2(spectrum).real / step**2
    return np.clip(window, 0.0, None)


def detector_psf(
    shape: tuple[int, int], sigma_px: float, tail_weight: float, tail_width_px: float = 2.0
) -> np.ndarray:
    """Point-spread function of a pixel detector: a Gaussian core and a long power-law tail.

    Pixel detectors (charge sharing, backscattered electrons, scintillator light spread)
    blur every pattern with a narrow core and a faint, slowly decaying tail; the tail of a
    bright direct beam then holds more counts than weak scattering far from it.

    Parameters
    ----------
    shape
        ``(k_y, k_x)`` of the kernel (odd sizes keep it centred; use twice the detector's).
    sigma_px
        Standard deviation of the Gaussian core, pixels (0: a delta).
    tail_weight
        Fraction of the counts in the tail, ``(1 + r^2 / w^2)^(-3/2)`` (a 2-D Lorentzian-like
        profile whose integral converges).
    tail_width_px
        Width ``w`` of the tail, pixels.

    Returns
    -------
    numpy.ndarray
        ``shape`` float64 kernel summing to 1, centred at ``(k_y // 2, k_x // 2)``.
    """
    ny, nx = shape
    yy = np.arange(ny)[:, None] - ny // 2
    xx = np.arange(nx)[None, :] - nx // 2
    r2 = yy.astype(np.float64) ** 2 + xx**2
    if sigma_px > 0:
        core = np.exp(-0.5 * r2 / sigma_px**2)
    else:
        core = (r2 == 0).astype(np.float64)
    core /= core.sum()
    if tail_weight <= 0:
        return core
    tail = (1.0 + r2 / tail_width_px**2) ** -1.5
    tail /= tail.sum()
    return (1.0 - tail_weight) * core + tail_weight * tail


def convolve_same(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Linear (zero-padded) convolution of an image with a centred kernel, same size out.

    Intensity spread beyond the image's edges is lost, as on a detector.

    Parameters
    ----------
    image
        ``(k_y, k_x)`` image.
    kernel
        ``(a, b)`` kernel centred at ``(a // 2, b // 2)``.

    Returns
    -------
    numpy.ndarray
        ``(k_y, k_x)`` float64.
    """
    from scipy.signal import fftconvolve

    full = fftconvolve(np.asarray(image, dtype=np.float64), kernel, mode="full")
    oy, ox = kernel.shape[0] // 2, kernel.shape[1] // 2
    out = full[oy : oy + image.shape[0], ox : ox + image.shape[1]]
    return np.maximum(out, 0.0)


def gaussian_kernel(sigma_px: float) -> np.ndarray:
    """Centred 2-D Gaussian kernel summing to 1 (a delta for ``sigma_px <= 0``)."""
    if sigma_px <= 0:
        return np.ones((1, 1))
    n = int(np.ceil(4 * sigma_px))
    yy, xx = np.mgrid[-n : n + 1, -n : n + 1]
    g = np.exp(-0.5 * (yy**2 + xx**2) / sigma_px**2)
    return g / g.sum()
