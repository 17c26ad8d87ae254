"""Job configuration: one YAML file covers every parameter of ``stemnmf run``.

The file is read with YAML's safe loader only (no Python object tags), every key is checked
against :data:`SCHEMA` (unknown keys and bad values are refused with the key named), and the
command line's flags override it. The resolved configuration has a hash that, with the input's
fingerprint, tells a scheduled re-run that its result is already there.

``nmf.map_resolution_nm`` takes ``"probe"``, ``"auto"``, ``"none"`` (or ``null``: no map
constraint) or a length in nm; its default is :class:`~dask_stemnmf.ConstrainedNMF`'s own
(read from the class, so the job file, the command line and Python agree). ``nmf.negative``
says what to do with negative values (background-subtracted data): ``"clip"`` (default, with
a note giving their count and minimum), ``"offset"`` or ``"refuse"``.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .classify import classify
from .errors import InputError
from .nmf import ConstrainedNMF

__all__ = ["SCHEMA", "config_hash", "input_fingerprint", "load_config", "resolve_config"]

Check = Callable[[Any], bool]


def _int(lo: int) -> tuple[Check, str]:
    return (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= lo,
        f"an integer >= {lo}",
    )


def _num(lo: float, hi: float = float("inf"), strict: bool = False) -> tuple[Check, str]:
    def ok(v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, int | float):
            return False
        return (v > lo if strict else v >= lo) and v <= hi

    bound = f"> {lo}" if strict else f">= {lo}"
    return ok, f"a number {bound}" + ("" if hi == float("inf") else f" and <= {hi}")


def _one_of(*choices: Any) -> tuple[Check, str]:
    return (lambda v: v in choices), "one of " + ", ".join(repr(c) for c in choices)


def _either(*checks: tuple[Check, str]) -> tuple[Check, str]:
    return (lambda v: any(c(v) for c, _ in checks)), " or ".join(d for _, d in checks)


_STR = ((lambda v: isinstance(v, str) and v != ""), "a non-empty string")
_BOOL = ((lambda v: isinstance(v, bool)), "true or false")
_NONE = ((lambda v: v is None), "null")


def _engine_default(name: str) -> Any:
    """Return a :class:`~dask_stemnmf.ConstrainedNMF` default (one source of truth)."""
    return inspect.signature(ConstrainedNMF).parameters[name].default


def _classify_default(name: str) -> Any:
    """Return a :func:`~dask_stemnmf.classify` default (one source of truth)."""
    return inspect.signature(classify).parameters[name].default


#: Spellings of "no map constraint" besides YAML's ``null`` (normalised to ``None``).
_NO_RESOLUTION = ("none", "None", "off")
_RESOLUTION = (
    _either(_one_of("probe", "auto", *_NO_RESOLUTION), _NONE, _num(0, strict=True))[0],
    "'probe', 'auto', 'none' (or null: no map constraint) or a length in nm > 0",
)

_PAIR = (
    (lambda v: isinstance(v, list) and len(v) == 2 and all(_int(1)[0](x) for x in v)),
    "a list of two positive integers",
)

#: ``section -> key -> (default, (check, description))``; ``None`` sections are top-level.
SCHEMA: dict[str, dict[str, tuple[Any, tuple[Check, str]]]] = {
    "job": {
        "input": (None, _either(_STR, _NONE)),
        "output": (None, _either(_STR, _NONE)),
        "chunks": ("auto", _either(_one_of("auto"), _PAIR)),
        "compare": (False, _BOOL),
        "checkpoint_every": (10, _int(1)),
        "cluster": ("local", _STR),
        "missing_chunks": ("refuse", _one_of("refuse", "mask")),
    },
    "nmf": {
        "n_components": (12, _int(1)),
        "solver": (_engine_default("solver"), _one_of("hals", "mu", "als")),
        "map_resolution_nm": (_engine_default("map_resolution_nm"), _RESOLUTION),
        "diffraction_continuity": (_engine_default("diffraction_continuity"), _BOOL),
        "init": (_engine_default("init"), _one_of("nndsvda", "random")),
        "max_iter": (_engine_default("max_iter"), _int(1)),
        "tol": (_engine_default("tol"), _num(0)),
        "random_state": (_engine_default("random_state"), _int(0)),
        "continuity_radius_px": (
            _engine_default("continuity_radius_px"), _either(_NONE, _num(0, strict=True))
        ),
        "dip_threshold": (_engine_default("dip_threshold"), _num(0, 1)),
        "dip_sigma": (_engine_default("dip_sigma"), _num(0)),
        "continuity_warm_start": (_engine_default("continuity_warm_start"), _int(0)),
        "fill_foreign_peaks": (_engine_default("fill_foreign_peaks"), _BOOL),
        "foreign_fill_step": (_engine_default("foreign_fill_step"), _num(0, 1, strict=True)),
        "merge_threshold": (
            _engine_default("merge_threshold"), _either(_NONE, _num(0, 1, strict=True))
        ),
        "max_merges": (_engine_default("max_merges"), _int(0)),
        "separate_halo": (_engine_default("separate_halo"), _BOOL),
        "bright_field_mask": (
            _engine_default("bright_field_mask"),
            _either(_one_of("auto"), _NONE, _num(0, strict=True)),
        ),
        "noise_normalisation": (_engine_default("noise_normalisation"), _BOOL),
        "negative": (_engine_default("negative"), _one_of("clip", "offset", "refuse")),
        "persist": (_engine_default("persist"), _either(_one_of("auto"), _BOOL)),
    },
    "classify": {
        "distance_threshold": (None, _either(_NONE, _num(0, 2, strict=True))),
        "n_classes": (None, _either(_NONE, _int(1))),
        "linkage": (_classify_default("linkage"), _one_of("average", "complete", "single")),
        "min_distance": (_classify_default("min_distance"), _num(0, 2)),
        "max_distance": (_classify_default("max_distance"), _either(_NONE, _num(0, 2))),
        "crystallinity_threshold": (_classify_default("crystallinity_threshold"), _num(0, 1)),
        "significance_threshold": (_classify_default("significance_threshold"), _num(0)),
        "region_threshold": (_classify_default("region_threshold"), _num(0, 1, strict=True)),
        "region_significance": (_classify_default("region_significance"), _num(0)),
        "n_angles": (_classify_default("n_angles"), _int(2)),
        "scaling": (_classify_default("scaling"), _one_of("sqrt", "log", "none")),
    },
}


def default_config() -> dict[str, Any]:
    """Return the configuration with every default filled in."""
    return {sec: {k: copy.deepcopy(v[0]) for k, v in keys.items()} for sec, keys in SCHEMA.items()}


def _check(section: str, key: str, value: Any) -> Any:
    """Refuse an unknown key or a bad value; return the value in its canonical spelling."""
    if key not in SCHEMA[section]:
        known = ", ".join(sorted(SCHEMA[section]))
        raise InputError(f"config: unknown key '{section}.{key}'; known keys: {known}")
    check, description = SCHEMA[section][key][1]
    if not check(value):
        raise InputError(f"config: '{section}.{key}' must be {description}, got {value!r}")
    if (section, key) == ("nmf", "map_resolution_nm") and value in _NO_RESOLUTION:
        return None
    return value


def resolve_config(
    given: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Check a configuration, fill in the defaults and apply overrides.

    Parameters
    ----------
    given
        ``{section: {key: value}}`` as read from YAML (sections ``job``, ``nmf``,
        ``classify``).
    overrides
        ``{"section.key": value}`` from the command line; ``None`` values are skipped.

    Returns
    -------
    dict
        The full configuration.
    """
    config = default_config()
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        raise InputError("config: the file must hold a mapping of sections (job, nmf, classify)")
    for section, values in given.items():
        if section not in SCHEMA:
            raise InputError(
                f"config: unknown section '{section}'; known sections: {', '.join(SCHEMA)}"
            )
        if not isinstance(values, Mapping):
            raise InputError(f"config: section '{section}' must be a mapping of keys to values")
        for key, value in values.items():
            config[section][str(key)] = _check(section, str(key), value)
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section, key = dotted.split(".", 1)
        config[section][key] = _check(section, key, value)
    return config


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML job file with the safe loader; return its raw mapping (unchecked).

    Parameters
    ----------
    path
        The YAML file.

    Returns
    -------
    dict
        ``{section: {key: value}}``.
    """
    import yaml

    p = Path(path)
    if not p.is_file():
        raise InputError(f"config file {str(p)!r} not found; check the path")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(
            f"config file {str(p)!r} is not plain YAML ({first}); Python object tags and "
            "other non-standard tags are refused"
        ) from None
    return data if data is not None else {}


def config_hash(config: Mapping[str, Any]) -> str:
    """SHA-256 of the parameters that shape the result (not the paths nor the cluster)."""
    shaping = {
        "nmf": config["nmf"],
        "classify": config["classify"],
        "job": {
            k: v for k, v in config["job"].items() if k in ("chunks", "compare", "missing_chunks")
        },
    }
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()


def input_fingerprint(store: str | os.PathLike[str]) -> str:
    """Fingerprint a zarr store: its metadata and each file's size and modification time.

    Reads only the directory listing and the small metadata files, never the data.
    """
    root = Path(store)
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(root).as_posix()
        stat = path.stat()
        h.update(f"{rel}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
        if path.name in ("zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata"):
            h.update(path.read_bytes())
    return h.hexdigest()
