"""`stemnmf run`: configuration, cluster files, skipping, checkpoints and a killed run."""

from __future__ import annotations

import inspect
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from dask_stemnmf import ConstrainedNMF, InputError, simulate_scan
from dask_stemnmf.cli import main
from dask_stemnmf.cluster import load_cluster_file
from dask_stemnmf.config import config_hash, load_config, resolve_config
from dask_stemnmf.pipeline import CLASSIFIED, FAILED, PENDING, checkpoint_path, open_result

from .conftest import tree_checksum

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "cluster_configs"
SYNC = ("--scheduler", "synchronous")


@pytest.fixture(scope="module")
def scan_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("scan") / "scan.zarr"
    simulate_scan(
        path, scan=(24, 24), detector=(32, 32), precipitates=4, phases=2, seed=2, chunks=(12, 24)
    )
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# ---- configuration ----------------------------------------------------------------------


def test_the_readmes_job_file_lists_every_key_with_its_default():
    """The README's "All keys, with their defaults" block is the configuration's defaults,
    values and types (``input`` and ``output`` have none; the block names examples)."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"All keys, with their defaults.*?```yaml\n(.*?)```", text, re.S)
    assert block is not None
    listed = yaml.safe_load(block.group(1))
    defaults = resolve_config({}, {})
    assert (defaults["job"]["input"], defaults["job"]["output"]) == (None, None)
    defaults["job"].update(input="scan.zarr", output="result.zarr")
    assert listed == defaults
    for section, values in defaults.items():
        for key, value in values.items():
            assert type(listed[section][key]) is type(value), (section, key)


def test_config_defaults_overrides_and_refusals(tmp_path):
    cfg = resolve_config({"nmf": {"n_components": 7}}, {"nmf.max_iter": 9, "job.input": None})
    assert cfg["nmf"]["n_components"] == 7 and cfg["nmf"]["max_iter"] == 9
    assert cfg["classify"]["linkage"] == "complete"
    cases = [
        ({"nmf": {"n_compnents": 3}}, "unknown key 'nmf.n_compnents'"),
        ({"nfm": {}}, "unknown section 'nfm'"),
        ({"nmf": {"max_iter": "many"}}, "'nmf.max_iter' must be an integer >= 1"),
        ({"nmf": {"max_iter": True}}, "'nmf.max_iter'"),
        ({"nmf": {"solver": "adam"}}, "'nmf.solver' must be one of"),
        ({"classify": {"n_angles": 1}}, "'classify.n_angles'"),
        ({"job": {"chunks": [0, 4]}}, "'job.chunks'"),
        (["a", "list"], "mapping of sections"),
    ]
    for given, message in cases:
        with pytest.raises(InputError, match=message):
            resolve_config(given)
    evil = tmp_path / "evil.yaml"
    evil.write_text("nmf: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(InputError, match="not plain YAML"):
        load_config(evil)
    assert not (tmp_path / "pwned").exists()


def test_map_resolution_and_negative_in_the_config(tmp_path):
    """``map_resolution_nm``: 'probe', 'auto', 'none' or null (off) or nm, the default the
    engine's own; ``negative``: clip (default), offset or refuse."""
    engine = inspect.signature(ConstrainedNMF).parameters
    cfg = resolve_config()
    assert cfg["nmf"]["map_resolution_nm"] == engine["map_resolution_nm"].default
    assert cfg["nmf"]["negative"] == "clip"
    for value, want in (("none", None), (None, None), ("auto", "auto"), ("probe", "probe"),
                        (1.5, 1.5)):  # fmt: skip
        got = resolve_config({"nmf": {"map_resolution_nm": value}})
        assert got["nmf"]["map_resolution_nm"] == want
    for cli, want in (("none", None), ("auto", "auto"), (2.0, 2.0)):
        got = resolve_config(None, {"nmf.map_resolution_nm": cli})
        assert got["nmf"]["map_resolution_nm"] == want
    # 'none' from the command line and null in a file are one configuration (one hash)
    assert config_hash(resolve_config({"nmf": {"map_resolution_nm": None}})) == config_hash(
        resolve_config(None, {"nmf.map_resolution_nm": "none"})
    )
    for text, want in (("none", None), ("null", None), ("auto", "auto"), ("probe", "probe")):
        job = tmp_path / f"{text}.yaml"
        job.write_text(f"nmf:\n  map_resolution_nm: {text}\n  negative: refuse\n")
        cfg = resolve_config(load_config(job))
        assert cfg["nmf"]["map_resolution_nm"] == want and cfg["nmf"]["negative"] == "refuse"
    for bad in ("fine", 0, -1.0, True):
        with pytest.raises(InputError, match="'auto', 'none'"):
            resolve_config({"nmf": {"map_resolution_nm": bad}})
    with pytest.raises(InputError, match="'clip', 'offset', 'refuse'"):
        resolve_config({"nmf": {"negative": None}})


@pytest.mark.parametrize("resolution", ["none", "auto"])
def test_map_resolution_none_and_auto_on_the_command_line(capsys, tmp_path, scan_store, resolution):
    out = tmp_path / "res.zarr"
    code, _, err = run(
        capsys, "run", scan_store, "-o", out, "-k", "3", "--max-iter", "12",
        "--map-resolution", resolution, *SYNC,
    )  # fmt: skip
    assert code == 0, err
    res = open_result(out)
    stored = json.loads(res.attrs["config"])["nmf"]["map_resolution_nm"]
    assert stored == (None if resolution == "none" else "auto")
    assert json.loads(res.attrs["nmf"])["map_resolution_nm"] == resolution


def test_a_failed_classification_keeps_the_decomposition(capsys, tmp_path, scan_store, monkeypatch):
    """Any exception in the classification: exit 0, the decomposition in a valid result, one
    note line; the report works on it; a re-run finds it up to date and repeats the note."""

    def broken(*args, **kwargs):
        raise RuntimeError("similarity exploded\nsecond line")

    monkeypatch.setattr("dask_stemnmf.pipeline.classify", broken)
    out = tmp_path / "res.zarr"
    argv = ("run", scan_store, "-o", out, "-k", "3", "--max-iter", "10", *SYNC)
    code, stdout, err = run(capsys, *argv)
    assert code == 0, err
    note = (
        "note: classification failed: RuntimeError: similarity exploded; the decomposition "
        f"is in {out}"
    )
    assert err.splitlines().count(note) == 1 and "Traceback" not in err
    assert stdout.startswith(f"done: {out} - 3 components, not classified")
    res = open_result(out)
    assert res["maps"].shape == (3, 24, 24) and res["diffractions"].shape == (3, 32, 32)
    assert "class_label" not in res and res.attrs["classification"] == FAILED
    assert res.attrs["classification_note"] == note.removeprefix("note: ")
    assert not checkpoint_path(out).exists()
    code, _, err = run(capsys, "report", out, "-o", tmp_path / "rep")
    assert code == 0, err
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "classification failed: RuntimeError: similarity exploded" in page
    assert (tmp_path / "rep" / "components.png").exists()
    assert not (tmp_path / "rep" / "dendrogram.png").exists() and "Precipitates" not in page
    code, stdout, err = run(capsys, *argv)
    assert code == 0 and "up to date" in stdout and note in err


def test_a_run_stopped_during_classification_finishes_without_refitting(
    capsys, tmp_path, scan_store, monkeypatch
):
    """The decomposition is in the output before the classification starts; a run stopped
    there leaves it (``classification="pending"``) and the next run only classifies."""

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("dask_stemnmf.pipeline.classify", interrupted)
    out = tmp_path / "res.zarr"
    argv = ("run", scan_store, "-o", out, "-k", "3", "--max-iter", "10", *SYNC)
    code, _, err = run(capsys, *argv)
    assert code == 130
    res = open_result(out)
    assert res.attrs["classification"] == PENDING and res["maps"].shape == (3, 24, 24)
    maps = res["maps"].values
    code, _, _ = run(capsys, "report", out, "-o", tmp_path / "rep")
    assert code == 0 and "has not run" in (tmp_path / "rep" / "index.html").read_text()
    monkeypatch.undo()

    def no_fit(*args, **kwargs):
        raise AssertionError("the fit ran again")

    monkeypatch.setattr(ConstrainedNMF, "fit", no_fit)
    code, stdout, err = run(capsys, *argv)
    assert code == 0, err
    assert "holds this job's decomposition: classifying it" in err and "done: " in stdout
    res = open_result(out)
    assert res.attrs["classification"] == CLASSIFIED and "class_label" in res
    np.testing.assert_array_equal(res["maps"].values, maps)
    code, stdout, _ = run(capsys, *argv)
    assert code == 0 and "up to date" in stdout


@pytest.mark.parametrize("name", ["local.yaml", "slurm.yaml", "pbs.yaml", "existing.yaml"])
def test_every_cluster_file_loads_and_validates(name):
    spec = load_cluster_file(CONFIGS / name)
    assert spec["kind"] in ("local", "slurm", "pbs", "address")


def test_bad_cluster_files_are_refused(tmp_path):
    cases = {
        "kind: kubernetes\n": "'kind' must be one of",
        "kind: local\nworkers: 2\n": "unknown key 'workers'",
        "kind: slurm\noptions: {cores: 4, memory: 8GiB, qeue: x}\n": "unknown dask-jobqueue",
        "kind: pbs\noptions: {cores: 4}\n": "options.memory is required",
        "kind: address\naddress: nowhere\n": "tcp://HOST:8786",
    }
    for text, message in cases.items():
        path = tmp_path / "c.yaml"
        path.write_text(text)
        with pytest.raises(InputError, match=message):
            load_cluster_file(path)


# ---- running ----------------------------------------------------------------------------


def test_run_writes_one_result_and_a_rerun_skips(capsys, tmp_path, scan_store):
    before = tree_checksum(scan_store)
    out = tmp_path / "res.zarr"
    job = tmp_path / "job.yaml"
    job.write_text("nmf:\n  n_components: 5\n  max_iter: 30\nclassify:\n  linkage: complete\n")
    code, stdout, err = run(capsys, "run", scan_store, "-o", out, "--config", job, *SYNC)
    assert code == 0, err
    assert "done: " in stdout and "NMF [" in err
    res = open_result(out)
    for var in ("maps", "diffractions", "loss", "similarity", "class_label", "class_map",
                "class_pattern", "centroid_y_nm", "area_nm2", "virtual_dark_field"):  # fmt: skip
        assert var in res, var
    assert res["maps"].shape == (5, 24, 24)
    assert '"linkage": "complete"' in res.attrs["config"] and "versions" in res.attrs
    assert not checkpoint_path(out).exists()
    code, stdout, _ = run(capsys, "run", scan_store, "-o", out, "--config", job, *SYNC)
    assert code == 0 and "up to date" in stdout
    # another configuration is refused without --force, then replaces with it
    code, _, err = run(capsys, "run", scan_store, "-o", out, "-k", "4", *SYNC)
    assert code == 2 and "--force" in err and err.count("\n") == 1
    code, _, _ = run(capsys, "run", scan_store, "-o", out, "-k", "4", "--force", *SYNC)
    assert code == 0 and open_result(out)["maps"].shape[0] == 4
    assert tree_checksum(scan_store) == before  # the input is never written


def test_run_refuses_bad_requests_with_one_line(capsys, tmp_path, scan_store):
    bad = tmp_path / "bad.yaml"
    bad.write_text("nmf:\n  n_components: -3\n")
    cases = [
        (("run", scan_store, "-o", tmp_path / "r.zarr", "--config", bad), "nmf.n_components"),
        (("run", scan_store, "-o", tmp_path / "no" / "r.zarr"), "does not exist"),
        (("run", scan_store), "-o RESULT.zarr"),
        (("run", tmp_path / "none.zarr", "-o", tmp_path / "r.zarr"), "none.zarr"),
        (("run", scan_store, "-o", scan_store), "output path is the input"),
        (("run", scan_store, "-o", tmp_path / "r.zarr", "--map-resolution", "fine"), "nm"),
        (("report", tmp_path / "none.zarr", "-o", tmp_path / "rep"), "not found"),
    ]
    for argv, message in cases:
        code, _, err = run(capsys, *argv, *SYNC) if argv[0] == "run" else run(capsys, *argv)
        assert code == 2, (argv, err)
        assert message in err and "Traceback" not in err and err.count("\n") == 1, err
    assert not (tmp_path / "r.zarr").exists() and not (tmp_path / "rep").exists()


def test_run_on_the_local_cluster_file(capsys, tmp_path, scan_store):
    out = tmp_path / "res.zarr"
    code, _, err = run(
        capsys, "run", scan_store, "-o", out, "-k", "4", "--max-iter", "15",
        "--cluster", CONFIGS / "local.yaml",
    )  # fmt: skip
    assert code == 0, err
    assert "dashboard: http://127.0.0.1:" in err and "local cluster from" in err
    assert open_result(out)["maps"].shape == (4, 24, 24)


def _console(*argv, cwd):
    exe = Path(sys.executable).with_name("stemnmf")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "dask_stemnmf.cli"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return [*cmd, *[str(a) for a in argv]], env


def test_a_killed_run_resumes_to_the_uninterrupted_result(tmp_path, scan_store):
    """SIGKILL a real `stemnmf run` after a checkpoint; `--resume` ends where an undisturbed
    run ends; no half-written result ever appears at the output; the input is unchanged."""
    before = tree_checksum(scan_store)
    common = ("-k", "5", "--max-iter", "60", "--checkpoint-every", "5", *SYNC)
    job = tmp_path / "job.yaml"
    job.write_text("nmf:\n  tol: 0.0\n")
    ref = tmp_path / "ref.zarr"
    cmd, env = _console("run", scan_store, "-o", ref, "--config", job, *common, cwd=tmp_path)
    assert subprocess.run(cmd, env=env, capture_output=True, timeout=300).returncode == 0
    out = tmp_path / "out.zarr"
    cmd, env = _console("run", scan_store, "-o", out, "--config", job, *common, cwd=tmp_path)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = checkpoint_path(out)
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        assert not out.exists()
        time.sleep(0.02)
    assert ckpt.exists(), "no checkpoint appeared"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    resumed = subprocess.run(
        [*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from the checkpoint at iteration" in resumed.stderr
    a, b = open_result(ref), open_result(out)
    for var in ("loss", "maps", "diffractions", "class_label", "similarity"):
        np.testing.assert_array_equal(a[var].values, b[var].values, err_msg=var)
    assert not ckpt.exists()
    assert tree_checksum(scan_store) == before
