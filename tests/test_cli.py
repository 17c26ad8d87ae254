from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dask_stemnmf import open_4dstem
from dask_stemnmf.cli import main

from .conftest import REAL_DATA, requires_real_data, tree_checksum, write_split_store

SYNC = ["--scheduler", "synchronous"]


def run(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *words):
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0]


def test_simulate_then_info(tmp_path, capsys):
    out_path = tmp_path / "s.zarr"
    code, out, _ = run(
        capsys,
        "simulate",
        out_path,
        "--scan",
        "16x12",
        "--detector",
        "24x24",
        "--precipitates",
        "4",
        "--chunks",
        "8x8",
        *SYNC,
    )
    assert code == 0 and "wrote" in out
    ds = open_4dstem(out_path)
    assert ds["intensity"].shape == (16, 12, 24, 24)
    assert ds["true_maps"].shape[0] == 6
    code, out, _ = run(capsys, "info", out_path, *SYNC)
    assert code == 0
    for text in (
        "scan 16 x 12",
        "uint16",
        "8 x 8 positions",
        "0.3 nm per pixel",
        "beam energy:",
        "200 keV",
        "size on disk",
        "as float32",
        "validates:     yes",
    ):
        assert text in out
    code, out, _ = run(capsys, "info", out_path, "--json", *SYNC)
    info = json.loads(out)
    assert info["shape"] == [16, 12, 24, 24] and info["validates"] is True


def test_info_counts_bad_values_and_fails(tmp_path, capsys):
    data = np.ones((4, 4, 5, 5), "float32")
    data[0, 0, 0, :2] = np.nan
    data[1, 1, 1, 1] = -3
    np.save(tmp_path / "bad.npy", data)
    code, _, err = run(capsys, "convert", tmp_path / "bad.npy", tmp_path / "bad.zarr", *SYNC)
    assert code == 0
    assert "note: 2 NaN and 0 Inf values" in err and "note: 1 negative values" in err
    before = tree_checksum(tmp_path / "bad.zarr")
    code, out, err = run(capsys, "info", tmp_path / "bad.zarr", *SYNC)
    assert "2 NaN, 0 Inf, 1 negative" in out and "validates:     no" in out
    assert_one_line_error(code, err, "does not validate", "2 NaN")
    assert tree_checksum(tmp_path / "bad.zarr") == before


def test_negative_values_and_missing_calibrations_are_notes_not_refusals(tmp_path, capsys):
    data = np.ones((4, 4, 5, 5), "float32")
    data[1, 1, 1, 1] = -3
    np.save(tmp_path / "neg.npy", data)
    code, _, err = run(capsys, "convert", tmp_path / "neg.npy", tmp_path / "neg.zarr", *SYNC)
    assert code == 0 and "note: 1 negative values (min -3)" in err and "clips them" in err
    code, out, err = run(capsys, "info", tmp_path / "neg.zarr", *SYNC)
    assert code == 0 and "validates:     yes" in out, err
    assert "clips them to 0 by default" in out
    assert "scan_step_nm is unknown; lengths are in scan pixels (px)" in out
    assert "--scan-step NM" in out


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["info", "{tmp}/missing.zarr"], ["no such file"]),
        (["info", "{tmp}/plain"], ["not a zarr store", "stemnmf convert"]),
        (["convert", "{tmp}/missing.npy", "{tmp}/o.zarr"], ["no such file"]),
        (["convert", "{tmp}/flat.npy", "{tmp}/o.zarr"], ["2-D array", "not a 4-D scan"]),
        (["convert", "{tmp}/text.npy", "{tmp}/o.zarr"], ["not a real number"]),
        (["convert", "{tmp}/flags.npy", "{tmp}/o.zarr"], ["not a real number"]),
        (["convert", "{tmp}/good.npy", "{tmp}/exists.zarr"], ["exists", "--overwrite"]),
        (["simulate", "{tmp}/exists.zarr"], ["exists", "--overwrite"]),
        (["convert", "{tmp}/good.npy", "{tmp}/nodir/o.zarr"], ["does not exist"]),
        (["simulate", "{tmp}/o.zarr", "--scan", "12by12"], ["--scan", "NxM"]),
        (["simulate", "{tmp}/o.zarr", "--dose", "-5"], ["--dose", "positive"]),
        (["convert", "{tmp}/good.npy", "{tmp}/o.zarr", "--scheduler", "nonsense"], ["--scheduler"]),
        (["frobnicate"], ["invalid choice"]),
    ],
)
def test_bad_input_gets_one_line_and_exit_2_and_touches_nothing(tmp_path, capsys, argv, words):
    (tmp_path / "plain").mkdir()
    np.save(tmp_path / "flat.npy", np.zeros((5, 5)))
    np.save(tmp_path / "text.npy", np.array([[["a"]]] * 2, dtype="U1").reshape(1, 2, 1, 1))
    np.save(tmp_path / "flags.npy", np.zeros((2, 2, 2, 2), bool))
    np.save(tmp_path / "good.npy", np.zeros((2, 2, 3, 3), "uint16"))
    (tmp_path / "exists.zarr").mkdir()
    (tmp_path / "exists.zarr" / "keep.txt").write_text("precious")
    before = tree_checksum(tmp_path)
    code, _, err = run(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert_one_line_error(code, err, *words)
    assert tree_checksum(tmp_path) == before


def test_convert_with_calibration_flags(tmp_path, capsys):
    np.save(tmp_path / "s.npy", np.arange(2 * 3 * 4 * 4, dtype="uint16").reshape(2, 3, 4, 4))
    code, _, err = run(
        capsys,
        "convert",
        tmp_path / "s.npy",
        tmp_path / "s.zarr",
        "--scan-step",
        "0.5",
        "--k-step",
        "0.2",
        "--k-units",
        "mrad",
        "--beam-energy",
        "300",
        "--convergence",
        "0.5",
        *SYNC,
    )
    assert code == 0 and "note" not in err
    ds = open_4dstem(tmp_path / "s.zarr")
    assert ds["k_x"].attrs["units"] == "mrad" and ds.attrs["beam_energy_kev"] == 300


def test_chunks_split_note_then_convert_fixes_them(tmp_path, capsys):
    write_split_store(tmp_path / "split.zarr")
    code, out, _ = run(capsys, "info", tmp_path / "split.zarr", *SYNC)
    assert code == 0 and "note:" in out and "split the patterns" in out
    code, _, err = run(capsys, "convert", tmp_path / "split.zarr", tmp_path / "fixed.zarr", *SYNC)
    assert code == 0 and "split the patterns" in err
    code, out, _ = run(capsys, "info", tmp_path / "fixed.zarr", *SYNC)
    assert "split the patterns" not in out


@requires_real_data
def test_convert_real_emd_from_the_command_line(tmp_path, capsys):
    code, _, err = run(
        capsys,
        "convert",
        REAL_DATA / "py4DSTEM_size2x3x4x5.h5",
        tmp_path / "e.zarr",
        "--beam-energy",
        "300",
        "--convergence",
        "1",
        *SYNC,
    )
    assert code == 0
    assert "20 negative values" in err
    code, out, _ = run(capsys, "info", tmp_path / "e.zarr", *SYNC)
    assert "0.442516 1/nm per pixel" in out


def _console(*argv, cwd):
    exe = Path(sys.executable).with_name("stemnmf")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "dask_stemnmf.cli"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(
        [*cmd, *argv], cwd=cwd, capture_output=True, text=True, timeout=300, env=env
    )


def test_demo_runs_on_the_embedded_local_cluster(tmp_path):
    proc = _console(
        "demo",
        "--scan",
        "24x24",
        "--detector",
        "32x32",
        "--workers",
        "2",
        "-k",
        "6",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "dashboard: http://127.0.0.1:" in proc.stdout
    assert "local cluster of 2 worker processes" in proc.stdout
    assert "done: " in proc.stdout and "crystalline classes" in proc.stdout
    ds = open_4dstem(tmp_path / "stemnmf-demo" / "scan.zarr")
    assert ds["intensity"].shape == (24, 24, 32, 32)
    report = tmp_path / "stemnmf-demo" / "report"
    assert (report / "index.html").is_file() and (report / "pca_components.png").is_file()


def test_real_process_bad_input_has_no_traceback(tmp_path):
    proc = _console("info", "nope.zarr", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: nope.zarr: no such file or directory"]
    assert list(tmp_path.iterdir()) == []


def test_other_warnings_are_printed_once_after_the_command(capsys):
    import argparse
    import warnings

    from dask_stemnmf.cli import _run

    def command(args):
        warnings.warn("library warning", UserWarning, stacklevel=1)
        warnings.warn("data note", __import__("dask_stemnmf").StemNMFWarning, stacklevel=1)
        return 0

    assert _run(command, argparse.Namespace()) == 0
    err = capsys.readouterr().err
    assert err.count("UserWarning: library warning") == 1
    assert err.count("note: data note") == 1
