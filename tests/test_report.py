"""The report: figures from a real result, and the page checked as a web page."""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import subprocess
import threading
from urllib.parse import urlparse

import pytest

from dask_stemnmf import simulate_scan
from dask_stemnmf.config import resolve_config
from dask_stemnmf.pipeline import open_result, run_job
from dask_stemnmf.report import write_report

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)  # fmt: skip


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    simulate_scan(root / "scan.zarr", scan=(24, 24), detector=(32, 32), precipitates=4, seed=3)
    job = {"input": str(root / "scan.zarr"), "output": str(root / "res.zarr"), "compare": True}
    config = resolve_config({"job": job, "nmf": {"n_components": 5, "max_iter": 30}})
    run_job(config)
    write_report(open_result(root / "res.zarr"), root / "report")
    return root / "report"


def test_report_has_every_figure_and_links_only_inside(report):
    page = (report / "index.html").read_text()
    for name in ("components", "map_fft", "loss", "dendrogram", "class_maps", "class_patterns",
                 "pca_components", "primitive_components", "primitive_map_fft"):  # fmt: skip
        assert (report / f"{name}.png").stat().st_size > 1000
        assert f'src="{name}.png"' in page
    assert "<table>" in page
    # the map resolution used, and where it came from (the default: the coarser of probe
    # and dose limits)
    assert re.search(r"resolution cutoff: [0-9.]+ scan pixels per cycle, the (dose|probe)", page)
    assert "limits in scan pixels: probe" in page
    # what the halo's separation did, in the components' caption
    assert re.search(r"share was taken out of \d+ crystalline components \([0-9, ]+; [0-9.]+ % "
                     r"|No crystalline component held a share", page)  # fmt: skip
    for link in re.findall(r'(?:src|href)="([^"]*)"', page):
        parsed = urlparse(link)
        assert not parsed.scheme and not parsed.netloc and not link.startswith("/"), link
        target = (report / link).resolve()
        assert target.is_relative_to(report.resolve()) and target.is_file(), link


def test_report_rejects_an_existing_folder(report):
    with pytest.raises(Exception, match="exists"):
        write_report(open_result(report.parent / "res.zarr"), report)


def test_report_loads_in_a_headless_browser(report, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    site = tmp_path / "site"
    shutil.copytree(report, site / "report")
    (site / "check.html").write_text(
        "<html><body><iframe id=f src='report/index.html' width=1200 height=800></iframe>"
        "<pre id=out>pending</pre><script>"
        "document.getElementById('f').onload = () => {"
        " const doc = document.getElementById('f').contentDocument;"
        " const imgs = Array.from(doc.images);"
        " const bad = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src);"
        " document.getElementById('out').textContent ="
        "  'IMAGES ' + (imgs.length - bad.length) + '/' + imgs.length + ' BAD ' + bad.join(',');"
        "};</script></body></html>"
    )
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/check.html"
        proc = subprocess.run(
            [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
             "--virtual-time-budget=10000", "--dump-dom", url],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        server.shutdown()
    found = re.search(r"IMAGES (\d+)/(\d+) BAD (.*?)<", proc.stdout)
    assert found, proc.stdout[-2000:] + proc.stderr[-2000:]
    loaded, total, bad = int(found.group(1)), int(found.group(2)), found.group(3)
    assert total >= 9 and loaded == total, bad
