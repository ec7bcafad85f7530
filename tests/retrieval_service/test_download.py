"""Photo URLs: the address policy (loopback, private, link-local refused unless allowed), every redirect
hop checked, a total deadline against drip-feeding servers, a byte limit applied while streaming, web
pages refused, and one download per photo. Servers run on loopback only."""

from __future__ import annotations

import io
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from retrieval_service.core import download as dl
from retrieval_service.core.errors import ImageLoadError
from retrieval_service.core.media_settings import DEFAULT_LIMITS, MediaLimits
from retrieval_service.core.photo import Photo


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 120, 200)).save(buf, "JPEG")
    return buf.getvalue()


JPEG = _jpeg()
HITS: dict[str, int] = {}


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        HITS[self.path] = HITS.get(self.path, 0) + 1
        route = self.path.split("?")[0]
        if route == "/ok.jpg":
            self._send(200, JPEG, "image/jpeg")
        elif route == "/page":
            self._send(200, b"<!doctype html><html><body>hi</body></html>", "text/html")
        elif route == "/missing.jpg":
            self._send(404, b"no", "text/plain")
        elif route == "/to-metadata":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.end_headers()
        elif route == "/to-ok":
            self.send_response(301)
            self.send_header("Location", "/ok.jpg")
            self.end_headers()
        elif route == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.end_headers()
        elif route == "/huge":  # no Content-Length: only streaming can stop it
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()
            try:
                for _ in range(4096):
                    self.wfile.write(b"\0" * 65536)
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif route == "/drip":  # one byte every 0.3 s: no single read times out
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(JPEG)))
            self.end_headers()
            try:
                for byte in JPEG:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.3)
            except (BrokenPipeError, ConnectionResetError):
                pass
        else:
            self._send(404, b"", "text/plain")

    def _send(self, code: int, body: bytes, kind: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


ALLOW = MediaLimits(allow_private_urls=True, url_timeout_s=5.0)


@pytest.fixture()
def load(tmp_path: Path):
    """A photo URL resolved (downloaded once, checked) and decoded."""
    return lambda src, limits=DEFAULT_LIMITS: Photo.resolve(src, tmp_path / "cache", limits).decode(limits)


@pytest.mark.parametrize(
    "address, kind",
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("192.168.1.20", "private"),
        ("169.254.169.254", "link-local"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::ffff:127.0.0.1", "loopback"),
        ("100.64.0.1", "public"),
    ],
)
def test_address_policy(address: str, kind: str):
    problem = dl.address_problem(address)
    if kind == "public":  # shared address space (RFC 6598) is not the public internet either
        assert problem is not None
    else:
        assert problem is not None and kind in problem
    assert dl.address_problem("93.184.216.34") is None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/x.jpg",
        "http://localhost:9/x.jpg",
        "http://[::1]:9/x.jpg",
        "http://2130706433:9/x.jpg",
        "http://10.0.0.1/x.jpg",
        "http://169.254.169.254/latest/meta-data/",
    ],
)
def test_local_targets_are_refused_by_default_without_connecting(url: str, load):
    start = time.monotonic()
    with pytest.raises(ImageLoadError, match="refused to download") as err:
        load(url)
    assert "GEOAGENT_ALLOW_PRIVATE_URLS" in err.value.hint
    assert time.monotonic() - start < 5


def test_loopback_server_refused_by_default_allowed_by_the_setting(server: str, tmp_path: Path):
    with pytest.raises(ImageLoadError, match="loopback"):
        Photo.resolve(f"{server}/ok.jpg", tmp_path)
    resolved = Photo.resolve(f"{server}/ok.jpg", tmp_path, ALLOW)
    assert resolved.ref == f"{server}/ok.jpg" and Path(resolved.path).read_bytes() == JPEG  # byte for byte, EXIF intact
    assert resolved.decode(ALLOW).size == (64, 48) and resolved.read_bytes() == JPEG


def test_every_redirect_hop_is_checked(server: str, monkeypatch: pytest.MonkeyPatch, load):
    real = dl.address_problem
    monkeypatch.setattr(dl, "address_problem", lambda a: None if a == "127.0.0.1" else real(a))  # the test server only
    limits = MediaLimits(url_timeout_s=5.0)
    assert load(f"{server}/to-ok", limits).size == (64, 48)
    with pytest.raises(ImageLoadError, match=r"169\.254\.169\.254, a link-local address"):
        load(f"{server}/to-metadata", limits)


def test_redirect_loops_stop(server: str, load):
    with pytest.raises(ImageLoadError, match="redirects more than 2 times"):
        load(f"{server}/loop", MediaLimits(allow_private_urls=True, url_max_redirects=2))


def test_a_dripping_server_cannot_hold_a_photo_past_the_deadline(server: str, load):
    start = time.monotonic()
    with pytest.raises(ImageLoadError, match=r"took longer than 1\.5 s"):
        load(f"{server}/drip", MediaLimits(allow_private_urls=True, url_timeout_s=1.5))
    assert time.monotonic() - start < 3.0


def test_a_huge_body_is_cut_off_while_streaming(server: str, load):
    start = time.monotonic()
    with pytest.raises(ImageLoadError, match=r"larger than the 1\.0 MiB limit"):
        load(f"{server}/huge", MediaLimits(allow_private_urls=True, max_image_bytes=2**20))
    assert time.monotonic() - start < 5.0


def test_pages_and_http_errors_are_clear(server: str, load):
    with pytest.raises(ImageLoadError, match="is a web page"):
        load(f"{server}/page", ALLOW)
    with pytest.raises(ImageLoadError, match="HTTP 404"):
        load(f"{server}/missing.jpg", ALLOW)


def test_a_url_is_downloaded_once_per_photo(server: str, tmp_path: Path):
    """Photo.resolve downloads once; the tools then read the local file (the Photo)."""
    HITS.clear()
    resolved = Photo.resolve(f"{server}/ok.jpg?once", tmp_path, ALLOW)
    for _ in range(3):
        resolved.decode(ALLOW)
        assert Photo.resolve(resolved, tmp_path, ALLOW) is resolved
        assert Photo.resolve(resolved.key, tmp_path, ALLOW).path == resolved.path  # by content reference: no download
    assert HITS == {"/ok.jpg?once": 1}
