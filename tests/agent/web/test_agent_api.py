"""The agent over HTTP: /v1/locate (uploads, URLs, bad inputs), 32 concurrent clients, the SSE
stream's event order, conversations with follow-up questions, the API key, `geoagent serve --help`."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.agent.web.conftest import jpeg, serve_app
from tests.waiting import GUARD_S

pytestmark = pytest.mark.slow


def test_locate_upload_answers_the_prediction_the_agent_gives(web_url, web_agent):
    from agent.prediction import Prediction

    photo = jpeg((40, 120, 200))
    resp = httpx.post(f"{web_url}/v1/locate", files={"image": ("sky.jpg", photo, "image/jpeg")}, timeout=GUARD_S)
    assert resp.status_code == 200, resp.text
    pred = Prediction.model_validate(resp.json())
    direct = web_agent.invoke({"image": photo})
    assert (pred.lat, pred.lon) == pytest.approx((direct.lat, direct.lon), abs=1e-6)
    assert pred.candidates and pred.trace and pred.mode == "policy"


@pytest.mark.parametrize(
    ("files", "status", "code"),
    [
        ({"image": ("notes.txt", b"just some text, not a photo", "image/jpeg")}, 422, "image_invalid"),
        ({"image": ("cut.jpg", jpeg((200, 30, 30))[:700], "image/jpeg")}, 422, "image_invalid"),
        ({"image": ("doc.pdf", jpeg((1, 2, 3)), "application/pdf")}, 415, "unsupported_media_type"),
        ({"photo": ("a.jpg", jpeg((1, 2, 3)), "image/jpeg")}, 422, "missing_image"),
    ],
)
def test_bad_uploads_are_4xx_with_a_fix(web_url, files, status, code):
    resp = httpx.post(f"{web_url}/v1/locate", files=files, timeout=GUARD_S)
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["code"] == code and err["message"] and err["fix"]


def test_oversize_wrong_type_and_private_url_are_refused(web_agent):
    with serve_app(web_agent, service_max_upload_mb=0.05) as url:
        big = jpeg((9, 9, 9), (1500, 1500)) + b"\0" * 60_000
        resp = httpx.post(f"{url}/v1/locate", files={"image": ("big.jpg", big, "image/jpeg")}, timeout=GUARD_S)
        assert resp.status_code == 413 and "GEOAGENT_SERVICE_MAX_UPLOAD_MB" in resp.json()["error"]["fix"]

        def chunked():  # no Content-Length: refused while it streams in
            yield b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
            for _ in range(20):
                yield b"\0" * 8192
            yield b"\r\n--b--\r\n"

        resp = httpx.post(
            f"{url}/v1/locate", content=chunked(), headers={"content-type": "multipart/form-data; boundary=b"}, timeout=GUARD_S
        )
        assert resp.status_code == 413, resp.text
        resp = httpx.post(f"{url}/v1/locate", content=b"x=1", headers={"content-type": "text/plain"}, timeout=GUARD_S)
        assert resp.status_code == 415 and "multipart" in resp.json()["error"]["fix"]
        for target in (
            "http://127.0.0.1:9/p.jpg",
            "http://10.1.2.3/p.jpg",
            "http://169.254.169.254/latest",
            "http://[::1]/x.jpg",
        ):
            resp = httpx.post(f"{url}/v1/locate", json={"url": target}, timeout=GUARD_S)
            assert resp.status_code == 400, (target, resp.text)
            assert resp.json()["error"]["code"] == "url_not_allowed"
        resp = httpx.post(f"{url}/v1/locate/stream", json={"url": "http://192.168.0.1/a.jpg"}, timeout=GUARD_S)
        assert resp.status_code == 400 and resp.json()["error"]["code"] == "url_not_allowed"


def test_url_input_when_private_targets_are_allowed(web_agent, web_url):
    """A JSON {"url"} photo: served by this same server under /static (loopback, so allowed explicitly)."""
    with serve_app(web_agent, service_allow_private_urls=True) as url:
        photo_url = f"{web_url}/assets/leaflet/images/layers-2x.png"
        resp = httpx.post(f"{url}/v1/locate", json={"url": photo_url}, timeout=GUARD_S)
        assert resp.status_code == 200, resp.text
        # the server fetched it under its URL policy and ran the agent on those bytes (no second fetch)
        assert resp.json()["image"] == "sha256:" + hashlib.sha256(httpx.get(photo_url).content).hexdigest()


def test_32_concurrent_clients_are_all_answered_with_their_own_photo(web_url, web_agent):
    colors = [(8 * i, 255 - 8 * i, (40 * i) % 256) for i in range(32)]
    photos = [jpeg(c, (96, 72)) for c in colors]
    expected = {}
    for i in range(0, 32, 8):  # the answers in-process, for 4 distinct photos (the rest repeat them)
        expected[i] = web_agent.invoke({"image": photos[i]})

    def call(i: int) -> tuple[int, dict]:
        photo = photos[(i // 8) * 8]
        r = httpx.post(f"{web_url}/v1/locate", files={"image": (f"p{i}.jpg", photo, "image/jpeg")}, timeout=GUARD_S)
        return r.status_code, r.json()

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(call, range(32)))
    for i, (status, body) in enumerate(results):
        assert status == 200, body
        want = expected[(i // 8) * 8]
        assert body["image"] == want.image
        assert (body["lat"], body["lon"]) == pytest.approx((want.lat, want.lon), abs=1e-6)


def test_stream_events_come_in_order_and_start_a_conversation(web_url):
    from agent.web.events import parse_sse

    resp = httpx.post(
        f"{web_url}/v1/locate/stream", files={"image": ("street.jpg", jpeg((90, 90, 60)), "image/jpeg")}, timeout=GUARD_S
    )
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(resp.text)
    names = [n for n, _ in events]
    assert names[0] == "thread" and names[-2:] == ["prediction", "done"]
    assert "error" not in names
    starts = [d["tool"] for n, d in events if n == "step_start"]
    ends = [d["tool"] for n, d in events if n == "step_end"]
    assert starts and starts == ends
    assert names.index("step_start") < names.index("step_end")  # steps end after they start
    open_steps = 0
    for name, _ in events:
        open_steps += {"step_start": 1, "step_end": -1}.get(name, 0)
        assert open_steps in (0, 1)
    pred = events[-2][1]["prediction"]
    tid = events[0][1]["thread_id"]
    thread = httpx.get(f"{web_url}/v1/threads/{tid}", timeout=GUARD_S).json()
    assert thread["prediction"]["lat"] == pred["lat"] and thread["title"] == "street.jpg" and thread["turns"] == []
    assert pred["image"].endswith("/street.jpg")  # the upload is kept under its name for follow-ups
    listed = httpx.get(f"{web_url}/v1/threads", timeout=GUARD_S).json()
    assert listed[0]["thread_id"] == tid and listed[0]["title"] == "street.jpg" and listed[0]["lat"] == pred["lat"]

    reply = httpx.post(f"{web_url}/v1/threads/{tid}/messages", json={"text": "What are the coordinates?"}, timeout=GUARD_S)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert f"{pred['lat']:.5f}" in body["reply"] and body["changed"] is False and body["prediction"]["lat"] == pred["lat"]
    streamed = parse_sse(
        httpx.post(f"{web_url}/v1/threads/{tid}/messages/stream", json={"text": "How sure are you?"}, timeout=GUARD_S).text
    )
    assert [n for n, _ in streamed] == ["thread", "reply", "done"] and "Confidence" in streamed[1][1]["text"]
    thread = httpx.get(f"{web_url}/v1/threads/{tid}", timeout=GUARD_S).json()
    assert [(t["role"], t["kind"]) for t in thread["turns"]] == [("user", "question"), ("assistant", "reply")] * 2
    assert thread["turns"][0]["text"] == "What are the coordinates?"
    for path in ("/v1/threads/nope/messages", "/v1/threads/nope/messages/stream"):
        missing = httpx.post(f"{web_url}{path}", json={"text": "hi"}, timeout=GUARD_S)
        assert missing.status_code == 404 and missing.json()["error"]["fix"], missing.text
    blank = httpx.post(f"{web_url}/v1/threads/{tid}/messages", json={"text": "   "}, timeout=GUARD_S)
    assert blank.status_code == 422
    assert httpx.delete(f"{web_url}/v1/threads/{tid}", timeout=GUARD_S).status_code == 204
    assert httpx.get(f"{web_url}/v1/threads/{tid}", timeout=GUARD_S).status_code == 404


def test_stream_maps_tokens_and_failures_to_events(web_agent):
    """LMM tokens (an agent that streams them) become token events; a failing run ends with an error event."""
    from agent.web.events import parse_sse
    from retrieval_service.core.errors import StoreError

    class Scripted:
        settings, services, mode, chat_model = web_agent.settings, web_agent.services, "agent", None

        def __init__(self, fail: bool) -> None:
            self.fail = fail

        def stream(self, input, config=None):
            yield {"type": "tool_start", "tool": "lmm"}
            yield {"type": "token", "node": "reason", "text": "Looks like "}
            yield {"type": "token", "node": "reason", "text": "Kauai."}
            yield {"type": "tool", "tool": "lmm", "summary": "answer", "latency_ms": 5.0, "error": None, "args": {}}
            if self.fail:
                raise StoreError("the store went away", "start Qdrant again")
            yield {"type": "prediction", "prediction": web_agent.invoke(input)}

    for fail in (False, True):
        with serve_app(Scripted(fail)) as url:  # no conversations: the events only
            resp = httpx.post(
                f"{url}/v1/locate/stream", files={"image": ("a.jpg", jpeg((5, 6, 7)), "image/jpeg")}, timeout=GUARD_S
            )
        events = parse_sse(resp.text)
        names = [n for n, _ in events]
        assert names[:4] == ["step_start", "token", "token", "step_end"]
        assert "".join(d["text"] for n, d in events if n == "token") == "Looks like Kauai."
        if fail:
            assert names[-1] == "error" and events[-1][1]["error"]["code"] == "store_unavailable"
        else:
            assert names[-2:] == ["prediction", "done"]


def test_api_key_is_required_when_set(web_agent):
    with serve_app(web_agent, service_api_key="s3cret") as url:
        photo = {"image": ("a.jpg", jpeg((1, 2, 3)), "image/jpeg")}
        assert httpx.post(f"{url}/v1/locate", files=photo, timeout=GUARD_S).status_code == 401
        assert httpx.get(f"{url}/v1/threads", timeout=GUARD_S).status_code == 401
        assert httpx.get(f"{url}/v1/threads", headers={"X-API-Key": "s3cret"}, timeout=GUARD_S).status_code == 501  # none kept
        ok = httpx.post(f"{url}/v1/locate", files=photo, headers={"X-API-Key": "s3cret"}, timeout=GUARD_S)
        assert ok.status_code == 200
        assert httpx.get(f"{url}/healthz", timeout=GUARD_S).status_code == 200  # probes need no key
        spec = httpx.get(f"{url}/openapi.json", timeout=GUARD_S).json()
        assert {"/v1/locate", "/v1/locate/stream", "/v1/search", "/v1/threads/{tid}/messages"} <= set(spec["paths"])
        page = httpx.get(f"{url}/", timeout=GUARD_S)
        assert page.status_code == 200 and "leaflet" in page.text and "unpkg" not in page.text


def test_serve_command_is_registered_with_help():
    from typer.testing import CliRunner

    from agent.cli import app

    out = CliRunner().invoke(app, ["serve", "--help"])
    assert out.exit_code == 0
    for word in ("--host", "--port", "/v1/locate", "--api-key"):
        assert word in out.output


def test_uploads_are_kept_inside_their_folder_under_a_clean_name(tmp_path):
    from agent.conversation.web import keep_upload, title_of

    data = jpeg((1, 1, 1))
    for name, want in (
        ("../../etc/passwd", "passwd.jpg"),
        ("a b?.JPG", "a_b_.JPG"),
        ("", "photo.jpg"),
        ("1014_N00@x.jpg", "1014_N00@x.jpg"),
    ):
        path = keep_upload(data, name, tmp_path / "uploads")
        assert path.name == want and path.read_bytes() == data
        assert path.resolve().is_relative_to((tmp_path / "uploads").resolve())
    assert title_of("sha256:0123456789abcdef") == "photo 01234567" and title_of("https://x.org/a/b.jpg?x=1") == "b.jpg"
