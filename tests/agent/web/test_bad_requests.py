"""Bad requests of any shape answer 4xx with the usual error body: JSON nested 200,000 deep, not
UTF-8, with a number too long, in the body or in a multipart JSON field; an empty upload and a
decompression bomb name the upload and the configured limit."""

from __future__ import annotations

import httpx
import pytest
from langgraph.checkpoint.memory import InMemorySaver

from agent import load_agent
from agent.conversation.threads import Threads
from tests.agent.fakes import make_fake_tools
from tests.agent.web.test_admission import NoRetriever
from tests.retrieval_service.test_decode_memory import bomb_png
from tests.waiting import GUARD_S

DEEP = b"[" * 200_000 + b"]" * 200_000


@pytest.fixture()
def url(agent_settings):
    from agent.web.app import create_app
    from retrieval_service.service.server import BackgroundServer
    from retrieval_service.service.settings import ServiceSettings

    agent = load_agent(agent_settings, mode="policy", tools=make_fake_tools())
    threads = Threads(load_agent(agent_settings, mode="policy", tools=make_fake_tools(), checkpointer=InMemorySaver()))
    svc = ServiceSettings(data_dir=agent_settings.data_dir, service_timeout_s=GUARD_S, max_image_pixels=50_000_000)
    app = create_app(agent, svc, retriever=NoRetriever(), threads=threads, warm_up=False)
    with BackgroundServer(app, start_timeout_s=GUARD_S) as base:
        yield base


@pytest.mark.parametrize("path", ["/v1/search", "/v1/locate", "/v1/locate/stream", "/v1/embed", "/v1/threads/t1/messages"])
@pytest.mark.parametrize(
    "body",
    [DEEP, b'{"url": "\xff\xfe"}', b'{"k_gallery": ' + b"9" * 5000 + b"}", b'{"url": '],
    ids=["nested-200000", "not-utf8", "long-number", "truncated"],
)
def test_bad_json_of_any_shape_is_400(url, path, body):
    """Before: JSON nested 200,000 deep answered 500 (RecursionError)."""
    resp = httpx.post(f"{url}{path}", content=body, headers={"content-type": "application/json"}, timeout=GUARD_S)
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["code"] == "bad_json" and err["message"].startswith("not valid JSON") and err["fix"]


def test_a_bad_json_form_field_is_400_with_its_fix(url):
    photo = {"image": ("a.jpg", b"\xff\xd8 not really", "image/jpeg")}
    resp = httpx.post(f"{url}/v1/search", files=photo, data={"filter": "[" * 100_000}, timeout=GUARD_S)
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["code"] == "bad_json" and "'filter'" in err["message"] and "-F 'filter=" in err["fix"]


def test_an_empty_upload_is_named(url):
    """Before: an empty upload read "'zero_bytes.jpg' are empty"."""
    resp = httpx.post(f"{url}/v1/locate", files={"image": ("zero_bytes.jpg", b"", "image/jpeg")}, timeout=GUARD_S)
    assert resp.status_code == 422
    err = resp.json()["error"]
    assert err["message"] == "the uploaded file 'zero_bytes.jpg' is empty (0 bytes)" and "image=@" in err["fix"]


def test_a_bomb_upload_names_the_configured_limit(url, tmp_path):
    """Before: the message quoted Pillow's limit, not the server's GEOAGENT_MAX_IMAGE_PIXELS."""
    data = bomb_png(tmp_path / "b.png", 14_000, 13_000).read_bytes()
    resp = httpx.post(f"{url}/v1/locate", files={"image": ("bomb.png", data, "image/png")}, timeout=GUARD_S)
    assert resp.status_code == 422, resp.text
    message = resp.json()["error"]["message"]
    assert "the uploaded file 'bomb.png'" in message and "limit of 50,000,000" in message and "178" not in message
