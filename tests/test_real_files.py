"""Real detector files through the whole command line: convert, run, report.

Each 4-D file of ``shared/data/real`` (see its README) goes through ``stemnmf convert``, then
``stemnmf run`` with the defaults (a small K and few iterations, to stay quick), then
``stemnmf report``; the result store holds the maps and diffractions, the page exists and no
command shows a traceback. Files lacking calibrations (the Merlin file has no scan step, none
has a beam energy) run all the same, in pixels where nm are unknown. Skipped, with the reason,
when the files or the optional reader (rosettasciio; h5py for the py4DSTEM file) are missing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dask_stemnmf.cli import main
from dask_stemnmf.pipeline import CLASSIFIED, FAILED, open_result

from .conftest import has_h5py, has_rsciio, tree_checksum

#: ``shared/data/real`` beside the repository (``STEMNMF_REAL_DATA`` elsewhere, see conftest).
REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"

SYNC = ("--scheduler", "synchronous")

#: name, scan shape, pattern shape, the reader it needs
FILES = [
    ("test1.blo", (3, 2), (144, 144), "rosettasciio"),
    ("topspin_test_B.app5", (3, 7), (31, 26), "rosettasciio"),
    ("001_4x2_6bit.mib", (2, 4), (256, 256), "rosettasciio"),
    ("py4DSTEM_size2x3x4x5.h5", (2, 3), (4, 5), "h5py"),
]

pytestmark = pytest.mark.skipif(
    not REAL_DATA.is_dir(), reason=f"real detector files not found at {REAL_DATA}"
)


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, err
    return code, out, err


def _needs(reader: str) -> None:
    if reader == "rosettasciio" and not has_rsciio:
        pytest.skip("optional reader rosettasciio missing: pip install 'dask_stemnmf[io]'")
    if reader == "h5py" and not has_h5py:
        pytest.skip("h5py missing: pip install 'dask_stemnmf[io]'")


@pytest.mark.parametrize(("name", "scan", "pattern", "reader"), FILES)
def test_a_real_file_converts_runs_and_reports(capsys, tmp_path, name, scan, pattern, reader):
    _needs(reader)
    src = REAL_DATA / name
    if not src.is_file():
        pytest.skip(f"{src} not found")
    before = tree_checksum(src)
    store, result, report = tmp_path / "scan.zarr", tmp_path / "res.zarr", tmp_path / "report"
    code, out, err = run(capsys, "convert", src, store, *SYNC)
    assert code == 0 and "wrote" in out, err
    code, out, err = run(capsys, "run", store, "-o", result, "-k", "2", "--max-iter", "8", *SYNC)
    assert code == 0, err
    assert out.startswith("done: "), out
    res = open_result(result)
    assert res["maps"].shape == (2, *scan)
    assert res["diffractions"].shape == (2, *pattern)
    assert res["virtual_dark_field"].shape == scan and res["mean_pattern"].shape == pattern
    summary = json.loads(res.attrs["summary"])
    assert res.attrs["classification"] in (CLASSIFIED, FAILED)
    if res.attrs["classification"] == FAILED:
        # one line, naming the reason and where the decomposition is
        notes = [line for line in err.splitlines() if "classification failed" in line]
        assert len(notes) == 1 and notes[0].startswith("note: classification failed: ")
        assert notes[0].endswith(f"the decomposition is in {result}")
        assert "not classified" in out and summary["note"] == res.attrs["classification_note"]
    else:
        assert "class_label" in res and summary["classes"] >= 0
    code, out, err = run(capsys, "report", result, "-o", report)
    assert code == 0 and out.strip() == f"report: {report / 'index.html'}", err
    page = (report / "index.html").read_text()
    assert (report / "components.png").stat().st_size > 1000
    assert (report / "map_fft.png").stat().st_size > 1000
    if res.attrs["classification"] == FAILED:
        assert "classification failed" in page and not (report / "dendrogram.png").exists()
    else:
        assert (report / "dendrogram.png").exists() and "<h2>Precipitates</h2>" in page
    assert tree_checksum(src) == before  # the input is never written


def test_the_tiny_py4dstem_patterns_say_why_they_are_not_classified(capsys, tmp_path):
    """4 x 5 pixel patterns, background-subtracted (negative values): the fit clips them
    with a note, and the classification says the patterns are too small to judge rotation."""
    _needs("h5py")
    store, result = tmp_path / "scan.zarr", tmp_path / "res.zarr"
    code, _, err = run(capsys, "convert", REAL_DATA / "py4DSTEM_size2x3x4x5.h5", store, *SYNC)
    assert code == 0 and "20 negative values" in err
    code, out, err = run(capsys, "info", store, *SYNC)
    assert code == 0 and "validates:     yes" in out and "clips them to 0" in out
    code, out, err = run(capsys, "run", store, "-o", result, "-k", "2", "--max-iter", "5", *SYNC)
    assert code == 0, err
    assert "too small to judge rotation" in err and "not classified" in out
    assert open_result(result).attrs["classification"] == FAILED
    # a re-run finds it up to date, and says again why it is not classified
    code, out, err = run(capsys, "run", store, "-o", result, "-k", "2", "--max-iter", "5", *SYNC)
    assert code == 0 and "up to date" in out and "note: classification failed" in err


def test_the_single_pattern_file_stays_refused(capsys, tmp_path):
    _needs("rosettasciio")
    code, _, err = run(capsys, "convert", REAL_DATA / "Amorphous.hspy", tmp_path / "a.zarr")
    assert code == 2 and "2-D array" in err and "not a 4-D scan" in err
    assert err.count("\n") == 1 and not (tmp_path / "a.zarr").exists()
