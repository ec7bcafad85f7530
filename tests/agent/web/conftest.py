"""Fixtures for ``geoagent serve``: the real policy agent (tiny random CLIP over the real 100K
gallery, no segmenter) behind the whole app on a loopback port, shared by the module, with the
chat's conversations on the same agent's graph with a SQLite checkpointer."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.retrieval_service.service.conftest import gallery_linked_settings
from tests.waiting import GUARD_S


def jpeg(color: tuple[int, int, int], size: tuple[int, int] = (320, 240)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def web_settings(gallery_data_dir: Path, tiny_model_config: Path, tmp_path_factory: pytest.TempPathFactory):
    return gallery_linked_settings(gallery_data_dir, tiny_model_config, tmp_path_factory.mktemp("web") / "data", segmenter="none")


@pytest.fixture(scope="module")
def web_agent(web_settings):
    from agent.api import load_agent

    agent = load_agent(web_settings, mode="policy")
    agent.check()
    return agent


@pytest.fixture(scope="module")
def web_threads(web_agent, web_settings):
    from agent.api import load_agent
    from agent.conversation.threads import Threads, sqlite_checkpointer

    with sqlite_checkpointer(web_settings.data_dir / "web" / "threads.sqlite") as saver:
        yield Threads(load_agent(web_settings, mode="policy", services=web_agent.services, checkpointer=saver))


def serve_app(agent, threads=None, **service_overrides):
    from agent.web.app import create_app
    from retrieval_service.service.server import BackgroundServer
    from retrieval_service.service.settings import ServiceSettings

    # the server's start and each request's deadline are guards against a hang, not the expected time; the
    # agent lane's queue holds the 32 concurrent clients of the concurrency test
    settings = ServiceSettings(
        **{
            "service_max_concurrency": 4,
            "service_agent_max_queue": 64,
            "service_timeout_s": GUARD_S,
            "data_dir": agent.settings.data_dir,
            **service_overrides,
        }
    )
    return BackgroundServer(create_app(agent, settings, threads=threads, warm_up=False), start_timeout_s=GUARD_S)


@pytest.fixture(scope="module")
def web_url(web_agent, web_threads) -> Iterator[str]:
    with serve_app(web_agent, web_threads) as url:
        yield url


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium through selenium, with no route beyond loopback."""
    if not (CHROMIUM and DRIVER):
        pytest.skip("Debian's chromium and chromium-driver are not installed (.ci/run installs them)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1400",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--proxy-server=direct://",
        "--proxy-bypass-list=*",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=Service(DRIVER))
    driver.set_page_load_timeout(GUARD_S)
    yield driver
    driver.quit()
