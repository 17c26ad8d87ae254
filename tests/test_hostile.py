"""Hostile and bad input to `stemnmf run`: one line, exit 2, no traceback, nothing written."""

from __future__ import annotations

import json
import os

import pytest

from dask_stemnmf import simulate_scan
from dask_stemnmf.cli import main

from .conftest import tree_checksum

SYNC = ["--scheduler", "synchronous"]


@pytest.fixture
def scan(tmp_path):
    path = tmp_path / "scan.zarr"
    simulate_scan(path, scan=(12, 12), detector=(16, 16), precipitates=2, seed=1, chunks=(6, 12))
    return path


def refused(capsys, argv, message, tmp_path, scan):
    before = tree_checksum(scan)
    listing = sorted(p.name for p in tmp_path.iterdir())
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert "Traceback" not in err and lines[-1].startswith("error: "), err
    assert message in lines[-1], err
    assert all(line.startswith(("error:", "running on:", "dashboard:")) for line in lines), err
    assert tree_checksum(scan) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == listing  # nothing written
    return lines[-1]


def job(tmp_path, text):
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


CONFIGS = {
    "unknown key": ("nmf:\n  n_componets: 4\n", "unknown key 'nmf.n_componets'"),
    "wrong type": ("nmf:\n  max_iter: lots\n", "'nmf.max_iter' must be an integer"),
    "python tag": ("nmf: !!python/object/apply:os.system ['echo hi']\n", "not plain YAML"),
    "not a mapping": ("- just\n- a list\n", "mapping of sections"),
    "escaping output": ("job:\n  output: ../../elsewhere.zarr\n", "climbs out of the job"),
}


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_bad_job_files(capsys, tmp_path, scan, case):
    text, message = CONFIGS[case]
    config = job(tmp_path, text)
    refused(capsys, ["run", scan, "-o", tmp_path / "r.zarr", "--config", config, *SYNC],
            message, tmp_path, scan)  # fmt: skip


def test_absurd_sizes(capsys, tmp_path, scan, monkeypatch):
    out = tmp_path / "r.zarr"
    for k, message in (("0", "'nmf.n_components' must be an integer >= 1"),
                       ("-3", "'nmf.n_components'"),
                       ("100000", "exceeds the data's size")):  # fmt: skip
        refused(capsys, ["run", scan, "-o", out, "-k", k, *SYNC], message, tmp_path, scan)
    refused(capsys, ["run", scan, "-o", out, "--max-iter", "0", *SYNC], "nmf.max_iter",
            tmp_path, scan)  # fmt: skip
    monkeypatch.setattr("dask_stemnmf.pipeline._machine_memory", lambda: 2**16)
    refused(capsys, ["run", scan, "-o", out, "--chunks", "12x12", *SYNC],
            "choose smaller chunks", tmp_path, scan)  # fmt: skip


def test_paths_that_write_elsewhere(capsys, tmp_path, scan):
    target = tmp_path / "victim"
    target.mkdir()
    link = tmp_path / "link.zarr"
    link.symlink_to(target)
    refused(capsys, ["run", scan, "-o", link, *SYNC], "symbolic link", tmp_path, scan)
    refused(capsys, ["run", scan, "-o", scan / "inside.zarr", *SYNC], "inside it",
            tmp_path, scan)  # fmt: skip
    assert not any(target.iterdir())


def _edit_metadata(scan, **changes):
    meta = scan / "intensity" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc.update(changes)
    meta.write_text(json.dumps(doc))


def test_a_store_whose_metadata_lies(capsys, tmp_path, scan):
    out = tmp_path / "r.zarr"
    meta = json.loads((scan / "intensity" / "zarr.json").read_text())
    _edit_metadata(scan, shape=[meta["shape"][0] * 2, *meta["shape"][1:]])
    refused(capsys, ["run", scan, "-o", out, *SYNC], "conflicting sizes for dimension 'scan_y'",
            tmp_path, scan)  # fmt: skip
    _edit_metadata(scan, shape=meta["shape"], data_type="float64")
    refused(capsys, ["run", scan, "-o", out, "-k", "2", *SYNC], "truncated or corrupt",
            tmp_path, scan)  # fmt: skip


def test_a_bare_store_claiming_more_positions(capsys, tmp_path):
    """Without other variables to contradict it, a shape that lies shows as missing chunks."""
    ds = open_4dstem_of(tmp_path)
    meta_path = ds / "intensity" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["shape"] = [meta["shape"][0] * 2, *meta["shape"][1:]]
    meta_path.write_text(json.dumps(meta))
    for coord in ("scan_y",):
        cmeta = ds / coord / "zarr.json"
        doc = json.loads(cmeta.read_text())
        doc["shape"] = [doc["shape"][0] * 2]
        cmeta.write_text(json.dumps(doc))
    refused(capsys, ["run", ds, "-o", tmp_path / "r.zarr", *SYNC],
            "chunk files of intensity are missing", tmp_path, ds)  # fmt: skip


def open_4dstem_of(tmp_path):
    """A scan store holding only intensity and its coordinates."""
    from dask_stemnmf import save_4dstem

    full = simulate_scan(scan=(12, 12), detector=(16, 16), precipitates=2, seed=1, chunks=(6, 12))
    path = tmp_path / "bare.zarr"
    save_4dstem(full[["intensity"]], path)
    return path


def test_bad_cluster_and_scheduler(capsys, tmp_path, scan):
    bad = job(tmp_path, "kind: local\nn_workers: many\n")
    refused(capsys, ["run", scan, "-o", tmp_path / "r.zarr", "--cluster", bad], "n_workers",
            tmp_path, scan)  # fmt: skip
    refused(capsys, ["run", scan, "-o", tmp_path / "r.zarr", "--scheduler", "nowhere"],
            "neither one of", tmp_path, scan)  # fmt: skip


def test_input_opened_read_only(tmp_path, scan):
    os.chmod(scan / "intensity" / "zarr.json", 0o444)
    assert main(["run", str(scan), "-o", str(tmp_path / "r.zarr"), "-k", "2", "--max-iter",
                 "5", *SYNC]) == 0  # fmt: skip
