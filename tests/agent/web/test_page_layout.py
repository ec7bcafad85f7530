"""The web page in headless Chromium: it says the server is warming up until /readyz answers ready;
it is usable at 420 px (nothing scrolls sideways, the sidebar above the page; a screenshot is
taken); the streamed LMM text wraps inside its strip and follows the text as it grows."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.conftest import shared_path
from tests.waiting import GUARD_S

pytestmark = pytest.mark.slow


class SlowRetriever:
    """A retriever whose warm-up waits until the test lets it finish."""

    def __init__(self, real) -> None:
        self.real = real
        self.release = threading.Event()

    def warm_up(self) -> None:
        assert self.release.wait(GUARD_S), "the test never released the warm-up"

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_the_page_says_it_is_warming_up_until_the_server_is_ready(browser, web_agent, web_settings):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from agent.web.app import create_app
    from retrieval_service.service.server import BackgroundServer
    from retrieval_service.service.settings import ServiceSettings

    slow = SlowRetriever(web_agent.services.retriever)
    settings = ServiceSettings(service_timeout_s=GUARD_S, data_dir=web_settings.data_dir)
    with BackgroundServer(create_app(web_agent, settings, retriever=slow, warm_up=True), start_timeout_s=GUARD_S) as url:
        browser.get(f"{url}/")
        wait = WebDriverWait(browser, GUARD_S)
        badge = lambda: browser.find_element(By.ID, "ready")  # noqa: E731
        wait.until(lambda d: "warming up" in badge().text)
        assert badge().get_attribute("class") == "warming"
        slow.release.set()
        wait.until(lambda d: badge().get_attribute("class") == "ready")  # the page polls /readyz until it says so
        assert badge().text == "ready"


def test_the_page_is_usable_at_420_px(browser, web_url, tmp_path: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    photo = sorted(shared_path("data", "im2gps3k-dev", "images").glob("*.jpg"))[1]
    browser.set_window_size(420, 900)
    try:
        browser.get(f"{web_url}/")
        wait = WebDriverWait(browser, GUARD_S)
        wait.until(lambda d: d.find_element(By.ID, "ready").text == "ready")
        browser.find_element(By.ID, "file").send_keys(str(photo))
        wait.until(lambda d: d.find_element(By.ID, "status").text in ("done",) or "error" in d.find_element(By.ID, "status").text)
        assert browser.find_element(By.ID, "status").text == "done"
        width = browser.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], width  # nothing scrolls sideways
        sidebar = browser.find_element(By.ID, "sidebar").rect
        main = browser.find_element(By.TAG_NAME, "main").rect
        assert sidebar["y"] + sidebar["height"] <= main["y"] + 1 and main["width"] >= 400  # the sidebar is a bar above
        answer = browser.find_element(By.ID, "answer")
        assert answer.is_displayed() and answer.rect["width"] <= width[1]
        assert len(browser.find_elements(By.CSS_SELECTOR, ".leaflet-marker-icon.answer-marker")) == 1
        shot = tmp_path / "page-420.png"
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000

        # the streamed text strip: long text wraps (no clipped lines) and the strip follows its end
        long_text = "The facades, the street signs and the tram lines point to one city. " * 60 + "LAST-WORDS"
        browser.execute_script(
            "const box = document.getElementById('tokens-box'); box.hidden = false; box.open = true;"
            "const t = document.getElementById('tokens'); t.textContent = arguments[0]; t.scrollTop = t.scrollHeight;",
            long_text,
        )
        strip = browser.find_element(By.ID, "tokens")
        sizes = browser.execute_script("const t = arguments[0]; return [t.scrollWidth, t.clientWidth, t.clientHeight];", strip)
        assert sizes[0] <= sizes[1] + 1, sizes  # wrapped: no line runs out of the strip
        assert sizes[2] >= 150, sizes  # room to read, not a 120 px sliver
    finally:
        browser.set_window_size(1280, 1400)
