"""Regenerate the README's screenshot of the app: ``python tests/app/screenshot.py``.

Serves the app with the shipped model (or ``--model``), clicks the MSR Action3D example button,
starts the skeleton animation, and saves the page to ``docs/images/app.png``. Needs the Debian
``chromium`` package and the ``playwright`` Python package (no browser download).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))  # app/ is used from the checkout (installed: codt_app)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def capture(url: str, out: Path, chromium: str, sequence: int) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1150}, device_scale_factor=1)
        page.set_default_timeout(120_000)
        page.goto(url)
        page.get_by_role("button", name="Try the examples").click()
        page.get_by_text("with confidence").wait_for()
        title = "document.querySelector('.js-plotly-plot')?.layout.title.text"
        page.wait_for_function(f"{title} !== undefined")
        if sequence:
            first = page.evaluate(title)
            page.get_by_role("gridcell", name=str(sequence), exact=True).first.click()
            page.wait_for_function(f"{title} !== {first!r}")
        page.get_by_text("Play", exact=False).first.click()
        page.wait_for_function("document.querySelector('.js-plotly-plot').layout.sliders[0]"
                               ".active >= 8")
        page.get_by_text("Pause", exact=False).first.click()
        page.evaluate("window.scrollTo(0, 0)")
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), full_page=False)
        browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model name or .onnx path (default: shipped)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "images" / "app.png")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--sequence", type=int, default=0, help="table row to show")
    args = parser.parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from app.model_store import ModelStore
    from app.ui import build_app, find_examples

    store = ModelStore(args.model)
    store.get()
    demo = build_app(store, examples=find_examples(REPO_ROOT))
    port = _free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                        quiet=True)
    try:
        capture(f"http://127.0.0.1:{port}/", args.out, args.chromium, args.sequence)
    finally:
        demo.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
