"""The app in a real headless Chromium: upload real files, watch the skeleton move, read the cluster.

Needs the Debian ``chromium`` package (``apt-get install chromium``) and the ``playwright`` Python
package; no browser is ever downloaded. The screenshot goes to ``$CODT_TEST_ARTIFACTS`` (default: a
pytest temporary ``artifacts`` folder) as ``app_browser.png``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")

# The first animated plot's joint x values, its slider position and the frame count of its clip.
_PLOT_STATE = """() => {
    const plot = document.querySelector('.js-plotly-plot');
    if (!plot || !plot.data || plot.data.length < 2) return null;
    return {x: plot.data[1].x.slice(), active: plot.layout.sliders[0].active,
            steps: plot.layout.sliders[0].steps.length, title: plot.layout.title.text};
}"""


def _chromium() -> str:
    for path in CHROMIUM_PATHS:
        if Path(path).is_file():
            return path
    found = shutil.which("chromium")
    if found is None and os.environ.get("CI", "").lower() == "true":
        pytest.fail("CI=true but headless Chromium is not installed: .ci/run installs the Debian "
                    "'chromium' package; the browser tests must run in CI, not skip")
    if found is None:
        pytest.skip("headless Chromium not found (install the Debian 'chromium' package); "
                    f"looked for {', '.join(CHROMIUM_PATHS)} and 'chromium' on PATH")
    return found


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    folder = os.environ.get("CODT_TEST_ARTIFACTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        return Path(folder)
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="module")
def page(app_url):
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = _chromium()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1400, "height": 1100})
            tab.set_default_timeout(60_000)
            tab.goto(app_url)
            yield tab
        finally:
            browser.close()


def test_upload_animate_and_read_the_cluster(page, example_files, artifacts, tmp_path):
    broken = tmp_path / "a09_s01_e01_skeleton3D.txt"
    broken.write_text("0.1 0.2 0.3 1.0\nnot a number\n")
    page.locator("input[type=file]").first.set_input_files(
        [str(f) for f in example_files[:4]] + [str(broken)])
    page.get_by_text(broken.stem, exact=True).first.wait_for()  # the upload finished
    page.get_by_role("button", name="Cluster", exact=True).click()
    page.get_by_text("with confidence").wait_for()
    page.wait_for_function(f"({_PLOT_STATE})() !== null")
    details = page.get_by_text("with confidence").inner_text()
    assert details.startswith("Cluster ")
    summary = page.get_by_text("sequence(s) clustered").inner_text()
    assert "**" not in summary and "4 sequence(s)" in summary
    assert "1 file(s) could not be used" in summary

    before = page.evaluate(_PLOT_STATE)
    assert before["title"].startswith("a01_s02_e01 · cluster ")
    assert before["active"] == 0 and before["steps"] == 28
    page.get_by_text("Play", exact=False).first.click()
    page.wait_for_function(f"({_PLOT_STATE})().active >= 5")
    during = page.evaluate(_PLOT_STATE)
    assert during["x"] != before["x"]  # the skeleton moved
    page.screenshot(path=str(artifacts / "app_browser.png"), full_page=True)
    assert (artifacts / "app_browser.png").stat().st_size > 10_000


def test_choosing_a_row_shows_that_sequence(page, example_files):
    page.get_by_role("tab", name="Sequences").click()
    page.get_by_role("gridcell", name="a02_s06_e01", exact=True).first.click()
    page.wait_for_function(f"({_PLOT_STATE})()?.title.startsWith('a02_s06_e01')")
    page.locator("code", has_text=example_files[3].name).wait_for()  # details under the plot
    page.get_by_role("tab", name="Problems").click()
    page.locator("text=line 2: expected a number >> visible=true").first.wait_for()
