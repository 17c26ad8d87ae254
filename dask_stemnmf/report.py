"""Figures (PNG) and one self-contained ``index.html`` from a result store (``stemnmf report``).

Every link in the page is a file inside the report folder; nothing is fetched from elsewhere.
A result whose classification failed (or has not run) still gets a page: the decomposition's
figures, and a note in place of the classification's. Lengths are in nm where the scan is
calibrated and in scan pixels (px) where it is not.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ._fsutil import atomic_output

__all__ = ["write_report"]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    """Write a figure as PNG and free it."""
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    _plt().close(fig)


def _grid(n: int, cols: int) -> tuple[int, int]:
    cols = max(1, min(cols, n))
    return -(-n // cols), cols


def _extent(ds: xr.Dataset, dims: tuple[str, str]) -> list[float]:
    y, x = (np.asarray(ds[d].values, dtype=float) for d in dims)
    return [x[0], x[-1], y[-1], y[0]]


def _components(ds: xr.Dataset, prefix: str, path: Path, title: str) -> None:
    """Draw maps beside diffractions, one pair per component."""
    plt = _plt()
    maps = np.asarray(ds[f"{prefix}maps"].values, dtype=float)
    dif = np.asarray(ds[f"{prefix}diffractions"].values, dtype=float)
    k = maps.shape[0]
    rows, cols = _grid(k, 4)
    fig, axes = plt.subplots(rows, 2 * cols, figsize=(2.0 * 2 * cols, 2.1 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for j in range(k):
        r, c = divmod(j, cols)
        ax_m, ax_d = axes[r, 2 * c], axes[r, 2 * c + 1]
        ax_m.imshow(maps[j], cmap="magma", extent=_extent(ds, ("scan_y", "scan_x")))
        ax_m.set_title(f"{j}: map", fontsize=8)
        if prefix == "pca_":  # signed loadings: zero in the middle of the colour scale
            lim = float(np.abs(dif[j]).max()) or 1.0
            ax_d.imshow(dif[j], cmap="RdBu_r", vmin=-lim, vmax=lim)
        else:
            ax_d.imshow(np.sqrt(np.maximum(dif[j], 0)), cmap="viridis")
        ax_d.set_title(f"{j}: diffraction", fontsize=8)
    fig.suptitle(title)
    _save(fig, path)


def _float(value: Any) -> float:
    """Return an attribute as a float (NaN when missing or not a number)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _scan_units(ds: xr.Dataset) -> str:
    """Units of the scan coordinates: ``"nm"``, or ``"px"`` for an uncalibrated scan."""
    return str(ds["scan_y"].attrs.get("units", "") or "px")


def _frequency_scale(ds: xr.Dataset, nmf: dict[str, Any]) -> tuple[float, str, float]:
    """Return the maps' sampling step, its frequency unit and the map cutoff in that unit.

    In nm when the scan step is known, else in scan pixels (``1/px``); the cutoff is NaN
    when the fit had no map constraint.
    """
    step = _float(ds.attrs.get("scan_step_nm"))
    if np.isfinite(step) and step > 0:
        cutoff = _float(nmf.get("map_cutoff_inv_nm"))
        if not np.isfinite(cutoff):
            cutoff = _float(nmf.get("map_cutoff_cycles_per_px")) / step
        return step, "1/nm", cutoff
    return 1.0, "1/px", _float(nmf.get("map_cutoff_cycles_per_px"))


def _map_ffts(
    ds: xr.Dataset, prefix: str, path: Path, scale: tuple[float, str, float], title: str
) -> None:
    """``|FFT|`` of each map with the resolution cutoff drawn (1/nm, or 1/px uncalibrated)."""
    plt = _plt()
    maps = np.asarray(ds[f"{prefix}maps"].values, dtype=float)
    step, unit, cutoff = scale
    k = maps.shape[0]
    rows, cols = _grid(k, 6)
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 2.1 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    ny, nx = maps.shape[1:]
    # the mirror-extended map (the DCT's view, where the band limit is imposed): no streaks
    # from the jump between opposite scan edges
    qy = np.fft.fftshift(np.fft.fftfreq(2 * ny, step))
    qx = np.fft.fftshift(np.fft.fftfreq(2 * nx, step))
    for j in range(k):
        ax = axes.ravel()[j]
        m = maps[j] - maps[j].mean()
        mirrored = np.block([[m, m[:, ::-1]], [m[::-1], m[::-1, ::-1]]])
        power = np.abs(np.fft.fftshift(np.fft.fft2(mirrored)))
        ax.imshow(np.log1p(power), cmap="gray", extent=[qx[0], qx[-1], qy[-1], qy[0]])
        if np.isfinite(cutoff):
            t = np.linspace(0, 2 * np.pi, 200)
            ax.plot(cutoff * np.cos(t), cutoff * np.sin(t), "r--", lw=0.8)
        ax.set_title(str(j), fontsize=8)
    # two lines, so that a figure of one or two maps is wide enough for the title
    fig.suptitle(f"{title}\n(mirror-extended, {unit}; dashed: resolution cutoff)", fontsize=9)
    _save(fig, path)


def _loss(ds: xr.Dataset, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    loss = np.asarray(ds["loss"].values, dtype=float)
    ax.semilogy(np.arange(1, loss.size + 1), loss, "o-", ms=2)
    ax.set_xlabel("iteration")
    ax.set_ylabel("residual / ||D||^2")
    ax.set_title("loss")
    _save(fig, path)


def _dendrogram(ds: xr.Dataset, path: Path) -> None:
    plt = _plt()
    from scipy.cluster import hierarchy

    fig, ax = plt.subplots(figsize=(5, 3.2))
    link = np.asarray(ds["linkage"].values, dtype=float)
    crystalline = np.flatnonzero(np.asarray(ds["class_label"].values) >= 0)
    if link.shape[0] >= 1:
        hierarchy.dendrogram(link, ax=ax, labels=[str(c) for c in crystalline])
        cut = float(json.loads(ds.attrs.get("classify", "{}")).get("cut_distance", np.nan))
        if np.isfinite(cut):
            ax.axhline(cut, color="r", ls="--", lw=0.8, label=f"cut {cut:.2f}")
            ax.legend()
    else:
        ax.text(0.5, 0.5, "fewer than two crystalline components", ha="center")
    ax.set_ylabel("1 - rotational similarity")
    ax.set_xlabel("component")
    ax.set_title("hierarchical clustering")
    _save(fig, path)


def _class_maps(ds: xr.Dataset, path: Path) -> None:
    plt = _plt()
    vdf = np.asarray(ds["virtual_dark_field"].values, dtype=float)
    maps = np.asarray(ds["class_map"].values, dtype=float)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    extent = _extent(ds, ("scan_y", "scan_x"))
    ax.imshow(vdf, cmap="gray", extent=extent)
    colours = plt.get_cmap("tab10")
    for c, m in enumerate(maps):
        rgba = np.zeros((*m.shape, 4))
        rgba[..., :3] = colours(c % 10)[:3]
        rgba[..., 3] = 0.75 * np.clip(m / max(m.max(), 1e-300), 0, 1)
        ax.imshow(rgba, extent=extent)
        ax.plot([], [], "s", color=colours(c % 10), label=f"class {c}")
    ys, xs = ds["centroid_y_nm"].values, ds["centroid_x_nm"].values
    ax.plot(xs, ys, "w+", ms=8)
    if maps.shape[0]:
        ax.legend(loc="upper right", fontsize=7)
    units = _scan_units(ds)
    ax.set_xlabel(f"x ({units})")
    ax.set_ylabel(f"y ({units})")
    ax.set_title("class maps over the dark-field image\n(+: precipitates)", fontsize=10)
    _save(fig, path)


def _class_patterns(ds: xr.Dataset, path: Path) -> None:
    plt = _plt()
    pats = np.asarray(ds["class_pattern"].values, dtype=float)
    n = max(pats.shape[0], 1)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.8), squeeze=False)
    for c in range(n):
        ax = axes[0, c]
        ax.set_axis_off()
        if c < pats.shape[0]:
            ax.imshow(np.sqrt(np.maximum(pats[c], 0)), cmap="viridis")
            ax.set_title(f"class {c} ({int(ds['class_size'].values[c])} components)", fontsize=8)
    fig.suptitle("rotation-aligned class diffractions")
    _save(fig, path)


def _table(ds: xr.Dataset) -> str:
    u = _scan_units(ds)
    cols = [
        ("id", None), ("class", "precipitate_class"), (f"centre y ({u})", "centroid_y_nm"),
        (f"centre x ({u})", "centroid_x_nm"), (f"area ({u}²)", "area_nm2"),
        ("rotation (deg)", "precipitate_rotation_deg"), ("component", "precipitate_component"),
    ]  # fmt: skip
    head = "".join(f"<th>{html.escape(name)}</th>" for name, _ in cols)
    rows = []
    for i in range(ds.sizes.get("precipitate", 0)):
        cells = []
        for _, var in cols:
            value = i if var is None else ds[var].values[i]
            text = f"{value:.2f}" if isinstance(value, float | np.floating) else str(value)
            cells.append(f"<td>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


_STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 1em auto; color: #222; }
img { max-width: 100%; border: 1px solid #ddd; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 2px 8px; }
figure { margin: 1.5em 0; } figcaption { color: #555; font-size: 0.9em; }
.note { background: #fff6d6; border-left: 4px solid #e0b000; padding: 4px 10px; }
"""


def _classification_note(ds: xr.Dataset) -> str:
    """Why a result has no classification (empty when it has one)."""
    if "class_label" in ds:
        return ""
    note = str(ds.attrs.get("classification_note", ""))
    if note:
        return note
    return (
        "the classification has not run (the job stopped after the fit): run the same "
        "`stemnmf run` again to finish it"
    )


def _notes(ds: xr.Dataset, nmf: dict[str, Any]) -> list[str]:
    """Return what a reader should know: the fit's notes, calibrations, the classification."""
    notes = [str(n) for n in nmf.get("notes", []) or []]
    if not np.isfinite(_float(ds.attrs.get("scan_step_nm"))):
        notes.append("the scan step is unknown: scan lengths are in scan pixels (px)")
    classification = _classification_note(ds)
    if classification:
        notes.append(f"{classification}; the classification's figures are left out")
    return notes


def _separation_text(nmf: dict[str, Any]) -> str:
    """Say how many crystalline components the amorphous halo's share was taken out of."""
    info = nmf.get("halo_separation")
    if not isinstance(info, dict):
        return ""
    purified = sorted({int(i) for i, _, _ in info.get("shares", [])})
    if not purified:
        return " No crystalline component held a share of the amorphous halo."
    text = (f" The amorphous halo's share was taken out of {len(purified)} crystalline "
            f"components ({', '.join(map(str, purified))}; "
            f"{100 * float(info.get('clipped_share', 0.0)):.1f} % of the model's intensity "
            "clipped)")  # fmt: skip
    mixed = info.get("left_mixed") or []
    if mixed:
        text += f"; left mixed: {', '.join(str(int(i)) for i in mixed)}"
    return text + "."


def _resolution_text(nmf: dict[str, Any]) -> str:
    """Say which map resolution the fit used and where it came from, in scan pixels."""
    cutoff = _float(nmf.get("map_cutoff_cycles_per_px"))
    if not np.isfinite(cutoff) or cutoff <= 0:
        return "no map constraint"
    res = nmf.get("map_resolution") or {}
    source = {
        "dose": "the dose-limited resolution (FRC of thinned halves)",
        "probe": "the probe's resolution",
        "given": "the resolution given",
    }.get(str(res.get("source")), "the resolution used")
    text = f"{1 / cutoff:.2f} scan pixels per cycle, {source}"
    probe, dose = _float(res.get("probe_cycles_per_px")), _float(res.get("dose_cycles_per_px"))
    limits = [f"{name} {1 / v:.2f}" for name, v in (("probe", probe), ("dose", dose))
              if np.isfinite(v) and v > 0]
    return text + (f" (limits in scan pixels: {', '.join(limits)})" if limits else "")


def write_report(
    result: xr.Dataset, out: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """Write the figures and ``index.html`` of a result store into a folder, atomically.

    Parameters
    ----------
    result
        A result store of ``stemnmf run`` (:func:`dask_stemnmf.pipeline.open_result`).
    out
        The report folder.
    overwrite
        Replace an existing folder.

    Returns
    -------
    pathlib.Path
        ``out / "index.html"``.
    """
    ds = result.load()
    nmf = json.loads(ds.attrs.get("nmf", "{}"))
    scale = _frequency_scale(ds, nmf)
    summary = json.loads(ds.attrs.get("summary", "{}"))
    classified = "class_label" in ds
    figures: list[tuple[str, str]] = []
    with atomic_output(out, overwrite=overwrite) as tmp:
        tmp.mkdir()
        _components(ds, "", tmp / "components.png", "constrained NMF: maps and diffractions")
        figures.append((
            "components.png",
            f"Components: each map beside its diffraction.{_separation_text(nmf)}",
        ))  # fmt: skip
        _map_ffts(ds, "", tmp / "map_fft.png", scale, "constrained NMF: maps' Fourier transforms")
        figures.append((
            "map_fft.png",
            f"The maps' Fourier transforms and the resolution cutoff: {_resolution_text(nmf)}.",
        ))  # fmt: skip
        _loss(ds, tmp / "loss.png")
        figures.append(("loss.png", "The loss, iteration by iteration."))
        if classified:
            _dendrogram(ds, tmp / "dendrogram.png")
            figures.append(("dendrogram.png", "Dendrogram of the crystalline components."))
            _class_maps(ds, tmp / "class_maps.png")
            figures.append(("class_maps.png", "Class maps over the virtual dark-field image."))
            _class_patterns(ds, tmp / "class_patterns.png")
            figures.append(("class_patterns.png", "Rotation-aligned mean diffraction per class."))
        if "pca_maps" in ds and "primitive_maps" in ds:
            for prefix, name in (("pca_", "PCA"), ("primitive_", "primitive NMF")):
                file = f"{prefix}components.png"
                _components(ds, prefix, tmp / file, f"{name}: maps and diffractions")
                figures.append((file, f"{name}, for comparison: maps and diffractions."))
                file = f"{prefix}map_fft.png"
                _map_ffts(ds, prefix, tmp / file, scale, f"{name}: maps' Fourier transforms")
                figures.append((file, f"{name}: the maps' Fourier transforms."))
        items = "".join(
            f'<figure><img src="{f}" alt="{html.escape(c)}"><figcaption>{html.escape(c)}'
            "</figcaption></figure>"
            for f, c in figures
        )
        facts = "".join(
            f"<li>{html.escape(str(k))}: {html.escape(str(v))}</li>"
            for k, v in summary.items()
            if k != "note"  # shown below with the other notes
        )
        notes = "".join(f"<p class='note'>Note: {html.escape(n)}</p>" for n in _notes(ds, nmf))
        table = f"<h2>Precipitates</h2>{_table(ds)}" if classified else ""
        page = (
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>stemnmf report</title><style>{_STYLE}</style></head><body>"
            f"<h1>stemnmf report</h1><p>Input: {html.escape(str(ds.attrs.get('input', '')))}"
            f"</p><ul>{facts}</ul>{notes}{items}{table}</body></html>"
        )
        (tmp / "index.html").write_text(page, encoding="utf-8")
    return Path(out) / "index.html"
