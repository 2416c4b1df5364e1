"""The web page in headless Chromium (Debian's, installed by ``make install``), driven through Playwright."""

from __future__ import annotations

import shutil
import tempfile

import pytest

pytestmark = pytest.mark.slow  # drives Chromium

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    exe = shutil.which("chromium") or "/usr/bin/chromium"
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            profile, executable_path=exe, args=CHROMIUM_ARGS, headless=True, viewport={"width": 1280, "height": 720}
        )
        try:
            yield ctx
        finally:
            ctx.close()


def lane(page, stream: str):
    return page.locator(f'.lane[data-stream="{stream}"] .lane-body')


def test_page_fills_the_answer_lane_and_takes_input_while_it_fills(live, browser):
    server = live(repeats=0, delay=0.01)  # the answer repeats the last question until interrupted
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.http + "/")
    page.wait_for_selector("#input:not([disabled])", timeout=15_000)
    assert [page.locator(".lane .lane-head b").nth(i).inner_text() for i in range(6)] == [
        "system",
        "user",
        "tool",
        "think",
        "answer",
        "call",
    ]
    assert "session ws-" in page.inner_text("#status")

    page.fill("#input", "Where is Paris?")
    page.press("#input", "Enter")
    page.wait_for_function(
        "document.querySelector('.lane[data-stream=answer] .lane-body').innerText.includes('Where is Paris?Where')",
        timeout=15_000,
    )
    assert page.locator(".lane[data-stream=answer] .msg.open").count() == 1  # still being written
    assert page.input_value("#input") == "" and page.is_enabled("#input")
    row_before = int(page.inner_text("#row"))
    assert row_before > 0

    page.fill("#input", "And Rome?")  # typed while the answer fills
    page.press("#input", "Enter")
    page.wait_for_function(
        "document.querySelector('.lane[data-stream=answer] .lane-body').innerText.includes('And Rome?And Rome?')", timeout=15_000
    )
    assert "Where is Paris?" in lane(page, "user").inner_text() and "And Rome?" in lane(page, "user").inner_text()
    assert int(page.inner_text("#row")) > row_before

    page.click("#abort")
    page.wait_for_selector(".lane[data-stream=answer] .msg.forced-end", timeout=15_000)
    assert page.locator(".lane[data-stream=answer] .msg.open").count() == 0
    assert not errors


def test_page_shows_tool_calls_and_results(live, browser):
    server = live()
    page = browser.new_page()
    page.goto(server.http + "/")
    page.wait_for_selector("#input:not([disabled])", timeout=15_000)
    page.fill("#input", "2+3")
    page.press("#input", "Enter")
    page.wait_for_selector(".lane[data-stream=call] .event.result", timeout=15_000)
    assert page.inner_text(".lane[data-stream=call] .event.result").endswith("→ 5")
    page.wait_for_function("document.querySelector('.lane[data-stream=tool] .lane-body').innerText.includes('5')", timeout=15_000)


def test_page_with_an_api_key(live, browser):
    server = live(api_key="sekret")
    page = browser.new_page()
    page.goto(server.http + "/")
    page.wait_for_function("document.getElementById('status').classList.contains('down')", timeout=15_000)
    assert page.is_disabled("#input")
    page.goto(server.http + "/?key=sekret")
    page.wait_for_selector("#input:not([disabled])", timeout=15_000)
