"""The HTML report as a person sees it: opened from disk in a real headless Chromium (Debian's package,
installed by `make`), with no console messages, every chart rendered with data, and a screenshot
kept as a test artifact (test-artifacts/report.png, git-ignored)."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from workbench.report import write_reports

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "results_fixture.json"
ARTIFACTS = ROOT / "test-artifacts"
pytestmark = pytest.mark.browser
# the drawn marks of a plotly trace: markers, lines, boxes, error bars, bars (a path with a real outline)
MARKS = re.compile(r'<path class="(?:point|js-line|box|violin|js-fill)"|<g class="errorbar"|<g class="point"><path d="M')


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.fail("chromium is not installed; `make test` installs Debian's package (apt-get install chromium)")
    return exe


def _run(*args, timeout=90) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--allow-file-access-from-files",
             "--disable-background-networking", "--disable-component-update",
             "--host-resolver-rules=MAP * ~NOTFOUND"]  # offline: any fetch from the network fails (and logs)
    return subprocess.run([_chromium(), *flags, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    d = tmp_path_factory.mktemp("browser")
    shutil.copy(FIXTURE, d / "results.json")
    return write_reports(d / "results.json", d)["html"]


def _console(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def test_the_detector_sees_console_errors_and_missing_charts(tmp_path):
    """The checks below are only worth something if they can fail: a page with an error and an empty chart."""
    bad = tmp_path / "bad.html"
    bad.write_text('<html><body><div id="chart-x"></div><script>console.error("boom"); undefinedFn();</script>'
                   "</body></html>")
    res = _run("--enable-logging=stderr", "--v=0", "--virtual-time-budget=2000", "--dump-dom", bad.as_uri())
    msgs = _console(res.stderr)
    assert any("boom" in m for m in msgs) and any("undefinedFn" in m for m in msgs)
    assert not MARKS.search(res.stdout)


def test_report_loads_offline_without_console_messages_and_every_chart_has_data(report):
    html = Path(report).read_text()
    # self-contained: no tag loads anything from the network (plotly is inlined)
    assert not re.search(r'<(?:script|link|img|iframe)[^>]*\s(?:src|href)="(?:https?:)?//', html)
    charts = re.findall(r'<div id="(chart-[^"]+)"', html)
    assert len(charts) >= 3, charts
    res = _run("--enable-logging=stderr", "--v=0", "--virtual-time-budget=8000", "--dump-dom", Path(report).as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    assert _console(res.stderr) == [], _console(res.stderr)
    dom = res.stdout
    for i, name in enumerate(charts):
        start = dom.find(f'id="{name}"')
        assert start >= 0, f"{name} missing from the rendered page"
        nxt = [dom.find(f'id="{c}"', start + 1) for c in charts[i + 1:]]
        seg = dom[start:min([n for n in nxt if n > 0], default=len(dom))]
        assert "js-plotly-plot" in seg[:400] and "main-svg" in seg, f"{name} was not drawn by plotly"
        assert MARKS.search(seg), f"{name} was drawn without any data"


def test_screenshot_is_kept_as_an_artifact(report):
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    res = _run("--hide-scrollbars", "--window-size=1280,2400", "--virtual-time-budget=8000",
               f"--screenshot={shot}", Path(report).as_uri())
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000  # a real, non-blank page
