"""Filesystem helpers: atomic outputs and store sizes."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import InputError, OutputExistsError

__all__ = ["atomic_output", "check_output_path", "directory_size"]


def check_output_path(path: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """Refuse an output path before any work is done.

    Parameters
    ----------
    path
        Where the output will go.
    overwrite
        Whether an existing output may be replaced.

    Returns
    -------
    pathlib.Path
        The path, made absolute.

    Raises
    ------
    OutputExistsError
        If ``path`` exists and ``overwrite`` is false.
    InputError
        If the parent directory does not exist.
    """
    out = Path(path).expanduser().absolute()
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} exists; pass --overwrite (overwrite=True) to replace it")
    if not out.parent.is_dir():
        raise InputError(f"output directory {out.parent} does not exist; create it first")
    return out


@contextmanager
def atomic_output(path: str | os.PathLike[str], *, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place on success.

    A failure (or a killed process) leaves ``path`` as it was: only hidden
    ``.NAME.partial-*`` folders can be left behind, never a half-written result at ``path``.

    Parameters
    ----------
    path
        Final location of the output (a file or a directory such as a zarr store).
    overwrite
        Whether an existing output may be replaced.
    """
    out = check_output_path(path, overwrite=overwrite)
    tag = uuid.uuid4().hex[:8]
    tmp = out.parent / f".{out.name}.partial-{tag}"
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    if out.exists():
        if not overwrite:
            _remove(tmp)
            raise OutputExistsError(f"{out} appeared while writing; pass --overwrite to replace it")
        old = out.parent / f".{out.name}.old-{tag}"
        os.replace(out, old)
        os.replace(tmp, out)
        _remove(old)
    else:
        os.replace(tmp, out)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def directory_size(path: str | os.PathLike[str]) -> int:
    """Return the total size in bytes of the files below ``path`` (or of the file itself)."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(p):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_size
            except OSError:
                continue
    return total
