"""The web chat in a real headless Chromium (Debian's chromium + chromium-driver through selenium),
with no route beyond loopback: upload a dev photo, wait for the answer, check the coordinates and
the map's markers against the server's prediction, ask a follow-up, save a screenshot."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import shared_path
from tests.waiting import GUARD_S

pytestmark = pytest.mark.slow


def test_upload_answer_map_and_follow_up(browser, web_url, tmp_path: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    images = shared_path("data", "im2gps3k-dev", "images")
    photo = sorted(images.glob("*.jpg"))[0]
    browser.get(f"{web_url}/")
    wait = WebDriverWait(browser, GUARD_S)  # the page's own progress is the event
    # the bundled countries draw without any network beyond loopback: land, coastlines and borders
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "path.land") and d.find_elements(By.CSS_SELECTOR, "path.border"))

    browser.find_element(By.ID, "file").send_keys(str(photo))
    wait.until(lambda d: d.find_element(By.ID, "status").text in ("done",) or "error" in d.find_element(By.ID, "status").text)
    assert browser.find_element(By.ID, "status").text == "done", browser.find_element(By.ID, "status").text

    threads = httpx.get(f"{web_url}/v1/threads", timeout=GUARD_S).json()
    assert threads[0]["title"] == photo.name
    pred = httpx.get(f"{web_url}/v1/threads/{threads[0]['thread_id']}", timeout=GUARD_S).json()["prediction"]
    assert browser.find_element(By.ID, "answer-coords").text == f"{pred['lat']:.5f}, {pred['lon']:.5f}"
    assert browser.find_element(By.ID, "answer-confidence").text == f"{pred['confidence']:.2f}"
    assert browser.find_element(By.ID, "answer-rationale").text.strip() == pred["rationale"].strip()
    steps = browser.find_elements(By.CSS_SELECTOR, "#steps li.done")
    assert [s.text.split(" ")[0] for s in steps] == [t["tool"] for t in pred["trace"]]
    assert len(browser.find_elements(By.CSS_SELECTOR, ".leaflet-marker-icon.answer-marker")) == 1  # the answer
    assert browser.find_elements(By.CSS_SELECTOR, ".geoagent-legend")  # what each mark is
    body = browser.find_element(By.TAG_NAME, "body").text
    assert body.count(pred["rationale"].strip()) == 1  # the rationale once, in the answer box
    assert len(browser.find_elements(By.CSS_SELECTOR, "path.candidate")) == len(pred["candidates"]) > 0
    assert len(browser.find_elements(By.CSS_SELECTOR, "path.cluster")) == len(pred["clusters"])
    listed = browser.find_elements(By.CSS_SELECTOR, "#threads li")
    assert listed and listed[0].text.startswith(photo.name)

    question = browser.find_element(By.ID, "question")
    question.send_keys("What are the coordinates?")
    browser.find_element(By.ID, "ask").click()
    wait.until(
        lambda d: (
            len(d.find_elements(By.CSS_SELECTOR, "#messages .assistant")) >= 2 and d.find_element(By.ID, "status").text == "done"
        )
    )
    reply = browser.find_elements(By.CSS_SELECTOR, "#messages .assistant")[-1].text
    assert f"{pred['lat']:.5f}" in reply and f"{pred['lon']:.5f}" in reply
    shot = tmp_path / "chat.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000

    # the conversation is listed and reopens with its answer and follow-up
    browser.find_element(By.ID, "new-chat").click()
    assert browser.find_element(By.ID, "answer").get_attribute("hidden") is not None
    browser.find_element(By.CSS_SELECTOR, "#threads li").click()
    wait.until(lambda d: d.find_element(By.ID, "answer-coords").text == f"{pred['lat']:.5f}, {pred['lon']:.5f}")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#messages .msg")) == 4


def test_map_draws_the_heatmap_and_search_area(browser, web_url, web_threads, tmp_path):
    """A conversation whose prediction carries a probability surface (as the decision core's do):
    the page draws the 50%/90% regions, the heatmap, and shows the probabilities and areas."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from agent.conversation.threads import thread_config
    from agent.conversation.web import chat_thread_id
    from agent.prediction import Prediction, ProbabilitySurface
    from tests.agent.web.conftest import jpeg

    photo = tmp_path / "surface.jpg"
    photo.write_bytes(jpeg((120, 60, 30)))
    tid, base = web_threads.create(str(photo), thread_id=chat_thread_id())

    def ring(d: float) -> list[tuple[float, float]]:
        return [
            (base.lat - d, base.lon - d),
            (base.lat - d, base.lon + d),
            (base.lat + d, base.lon + d),
            (base.lat + d, base.lon - d),
            (base.lat - d, base.lon - d),
        ]

    pred = Prediction.model_validate(
        {
            **base.model_dump(),
            "probabilities": {"1": 0.01, "25": 0.2, "200": 0.5, "750": 0.8, "2500": 0.95},
            "search_area_km2": {"50": 41000.0, "90": 390000.0},
            "surface": ProbabilitySurface(
                heat=[(base.lat, base.lon, 1.0), (base.lat + 1, base.lon + 1, 0.5)],
                regions={"50": [ring(1.0)], "90": [ring(3.0), ring(0.5)]},
            ),
        }
    )
    web_threads.agent.graph.update_state(thread_config(tid), {"prediction": pred}, as_node="decide")

    browser.get(f"{web_url}/")
    wait = WebDriverWait(browser, GUARD_S)
    wait.until(lambda d: any(li.get_attribute("data-id") == tid for li in d.find_elements(By.CSS_SELECTOR, "#threads li")))
    next(li for li in browser.find_elements(By.CSS_SELECTOR, "#threads li") if li.get_attribute("data-id") == tid).click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "path.search-area")) == 3)
    assert browser.find_elements(By.CSS_SELECTOR, "canvas.leaflet-heatmap-layer")
    assert "≤25: 20%" in browser.find_element(By.ID, "answer-probs").text
    assert "50%: 41,000 km²" in browser.find_element(By.ID, "answer-area").text
