"""Take docs/labelling.png: the labelling page on generated captchas, a model suggesting, 24 answers given.

    python tools/labelling_screenshot.py [--model base] [--out docs/labelling.png]

Needs playwright and Chromium at /usr/bin/chromium.
"""

import argparse
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
PORT = 8799


def main() -> int:
    """Generate, serve, answer by keyboard, shoot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="base", help="the suggesting model (default: the shipped base model)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "labelling.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source, folder = Path(tmp) / "source", Path(tmp) / "my_captchas"
        subprocess.run([sys.executable, str(ROOT / "tools" / "make_captchas.py"), "--out", str(source),
                        "--count", "60", "--seed", "77"], check=True, stdout=subprocess.DEVNULL)
        folder.mkdir()
        for i, path in enumerate(sorted(source.glob("*.png"))):
            (folder / f"IMG_{4100 + i}.png").write_bytes(path.read_bytes())
        server = subprocess.Popen([sys.executable, "ocr_captcha.py", "--label", str(folder), "--model", args.model,
                                   "--port", str(PORT)], cwd=ROOT)
        try:
            url = f"http://127.0.0.1:{PORT}/label/"
            for _ in range(600):
                try:
                    if b'"status":"ready"' in urllib.request.urlopen(url + "api/state").read():
                        break
                except OSError:
                    pass
                time.sleep(0.2)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                                     args=["--headless", "--no-sandbox", "--disable-gpu"])
                page = browser.new_page(viewport={"width": 900, "height": 640}, device_scale_factor=1)
                page.goto(url)
                page.wait_for_function("window.labelling && window.labelling.ready")
                page.select_option("#order", "confident")
                page.wait_for_timeout(500)
                for _ in range(24):  # past 20 labels: the suggestions follow the labels' format
                    page.keyboard.press("Enter")
                    page.wait_for_timeout(250)
                page.wait_for_function("document.getElementById('model-status').textContent.includes('as your labels')"
                                       " && document.getElementById('model-status').textContent.endsWith('ready')",
                                       timeout=120_000)
                page.wait_for_timeout(500)
                page.screenshot(path=str(args.out), full_page=True)
                browser.close()
        finally:
            server.terminate()
            server.wait()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
