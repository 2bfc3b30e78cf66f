"""Screenshots of the page of a running `unimae serve`, one PNG per tab (the pictures in docs/serving.md).

    unimae rag index examples/docs --model smollm2-135m --index runs/rag-ui
    unimae serve smollm2-135m --index runs/rag-ui --port 8765 &
    python scripts/page_screenshots.py http://127.0.0.1:8765 docs/images

Drives Debian's chromium (``--chromium`` for another binary) with playwright; nothing is downloaded. The
tab's answers come from the served model (greedy), so the pictures show what that model really says.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from playwright.sync_api import sync_playwright

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
COMPARE = [
    "A man is playing a guitar.",
    "Someone plays a musical instrument.",
    "The lighthouse was built in 1887.",
    "A tower on the cliff guides ships at night.",
    "The stock market fell sharply today.",
]


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url", help="the server's base URL")
    p.add_argument("out", type=Path, help="folder for page-chat.png, page-compare.png, page-search.png")
    p.add_argument("--key", help="the server's API key, if it has one")
    p.add_argument("--chat", default="What is a lighthouse for? Answer in two sentences.")
    p.add_argument("--ask", default="Who built the lighthouse on Brightwater Island, and when?")
    p.add_argument("--max-tokens", type=int, default=80)
    p.add_argument("--chromium", default=shutil.which("chromium"))
    p.add_argument("--width", type=int, default=1000)
    p.add_argument("--height", type=int, default=760)
    return p.parse_args()


def shoot(page, args: argparse.Namespace) -> None:
    """Fill and run each tab, then save its picture."""
    page.fill("#chat-max-tokens", str(args.max_tokens))
    page.fill("#chat-input", args.chat)
    page.click("#chat-send")
    page.wait_for_selector("#chat-stop:disabled")  # the reply is complete
    page.screenshot(path=str(args.out / "page-chat.png"))
    page.click("#tab-compare")
    page.fill("#compare-input", "\n".join(COMPARE))
    page.click("#compare-run")
    page.wait_for_selector("#compare-matrix td")
    page.screenshot(path=str(args.out / "page-compare.png"))
    page.click("#tab-search")
    page.fill("#search-query", args.ask)
    page.fill("#search-k", "3")
    page.fill("#ask-max-tokens", str(args.max_tokens))
    page.click("#ask-run")
    page.wait_for_selector("#answer:not([hidden])")
    page.screenshot(path=str(args.out / "page-search.png"))


def main() -> None:
    args = _parse()
    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=ARGS)
        page = browser.new_page(viewport={"width": args.width, "height": args.height})
        page.set_default_timeout(300_000)
        page.goto(args.url)
        if args.key:
            page.fill("#key-input", args.key)
            page.click("#key-submit")
        page.wait_for_selector("body[data-ready='1']")
        shoot(page, args)
        browser.close()
    for name in ("chat", "compare", "search"):
        path = args.out / f"page-{name}.png"
        print(f"{path}: {path.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
