"""Downloading a photo URL safely: once, streaming, within a total deadline and a byte limit.

Every hop (the URL and each redirect target) is checked before any connection: the scheme must be
http(s); the host is resolved first and every address it resolves to must be public (loopback,
private, link-local, multicast, reserved, unspecified and shared addresses are refused unless
``allow_private_urls``); the connection is then made to the checked address itself (the host name
goes in the Host header and, for https, in the TLS server name), so a second DNS answer cannot
point the request elsewhere. Redirects are followed by hand, at most ``url_max_redirects``.

The whole download runs in a worker thread and the caller waits at most ``url_timeout_s``: a server
that drips one byte at a time cannot hold a photo longer than the deadline.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import httpx

from retrieval_service.core.errors import ImageLoadError
from retrieval_service.core.media_settings import MediaLimits

logger = logging.getLogger(__name__)

REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "geoagent (photo download)"
_RESOLVER = ThreadPoolExecutor(max_workers=4, thread_name_prefix="geoagent-dns")
_PRIVATE_HINT = "download the photo and pass the file, or set GEOAGENT_ALLOW_PRIVATE_URLS=true to allow local addresses"


def address_problem(address: str) -> str | None:
    """Why ``address`` (an IP literal) is not a public internet address, or None when it is."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for kind, flag in (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("unspecified", ip.is_unspecified),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
    ):
        if flag:
            return f"a {kind} address"
    if not ip.is_global:
        return "not a public address"
    return None


def resolve_host(host: str, port: int, timeout_s: float) -> list[str]:
    """The IP addresses ``host`` resolves to (``getaddrinfo``, bounded by ``timeout_s``)."""
    future = _RESOLVER.submit(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM)
    try:
        infos = future.result(timeout=max(0.01, timeout_s))
    except FutureTimeout:
        raise ImageLoadError(f"resolving {host} took longer than {timeout_s:.0f} s", "check the network or the URL") from None
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise ImageLoadError(f"cannot resolve the host {host!r}: {exc}", "check the URL and the network connection") from exc
    addresses: list[str] = []
    for *_, sockaddr in infos:
        if sockaddr[0] not in addresses:
            addresses.append(str(sockaddr[0]))
    if not addresses:
        raise ImageLoadError(f"the host {host!r} has no address", "check the URL")
    return addresses


def checked_address(url: httpx.URL, limits: MediaLimits, deadline: float) -> str:
    """Resolve the URL's host and apply the address policy; the address to connect to."""
    if url.scheme not in ("http", "https"):
        raise ImageLoadError(f"{url} is not an http(s) URL", "pass an http:// or https:// URL, or a local file")
    if not url.host:
        raise ImageLoadError(f"{url} has no host", "pass a complete URL such as https://example.org/photo.jpg")
    port = url.port or (443 if url.scheme == "https" else 80)
    addresses = resolve_host(url.host, port, deadline - time.monotonic())
    if not limits.allow_private_urls:
        for address in addresses:
            problem = address_problem(address)
            if problem:
                raise ImageLoadError(
                    f"refused to download {url}: {url.host} resolves to {address}, {problem}", _PRIVATE_HINT, reason="url_refused"
                )
    return addresses[0]


def _pinned_request(client: httpx.Client, url: httpx.URL, address: str) -> httpx.Request:
    """A GET for ``url`` sent to ``address`` (Host header and TLS server name keep the host name)."""
    literal = f"[{address}]" if ":" in address else address
    pinned = url.copy_with(host=literal.strip("[]"))
    host_header = url.host if url.port is None else f"{url.host}:{url.port}"
    headers = {"Host": host_header, "User-Agent": USER_AGENT, "Accept": "image/*"}
    extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
    return client.build_request("GET", pinned, headers=headers, extensions=extensions)


def _fetch(url_text: str, limits: MediaLimits, deadline: float, cancel: threading.Event) -> bytes:
    try:
        url = httpx.URL(url_text)
    except (httpx.InvalidURL, ValueError) as exc:
        raise ImageLoadError(f"{url_text!r} is not a valid URL: {exc}", "check the URL") from exc
    timeout = httpx.Timeout(max(0.01, deadline - time.monotonic()))
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        for hop in range(limits.url_max_redirects + 1):
            address = checked_address(url, limits, deadline)
            try:
                response = client.send(_pinned_request(client, url, address), stream=True)
            except httpx.HTTPError as exc:
                raise ImageLoadError(
                    f"could not download {url}: {type(exc).__name__}: {exc}",
                    "check the network connection, or download the photo and pass the local file",
                ) from exc
            try:
                if response.status_code in REDIRECT_CODES and "location" in response.headers:
                    url = url.join(response.headers["location"])
                    logger.info("redirect %d to %s", hop + 1, url)
                    continue
                return _read_body(url, response, limits, deadline, cancel)
            finally:
                response.close()
    raise ImageLoadError(
        f"{url_text} redirects more than {limits.url_max_redirects} times",
        "pass the final URL of the photo, or raise GEOAGENT_URL_MAX_REDIRECTS",
    )


def _read_body(url: httpx.URL, response: httpx.Response, limits: MediaLimits, deadline: float, cancel: threading.Event) -> bytes:
    if response.status_code >= 400:
        raise ImageLoadError(
            f"could not download {url}: HTTP {response.status_code}", "check the URL or download the photo and pass the file"
        )
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in ("text/html", "application/xhtml+xml"):
        raise ImageLoadError(
            f"{url} is a web page ({kind}), not an image",
            "pass the URL of the image itself (right-click the photo, copy image address)",
        )
    limit = limits.max_image_bytes
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ImageLoadError(
            f"{url} is {int(declared) / 2**20:.1f} MiB, more than the {limit / 2**20:.1f} MiB limit",
            "pass a smaller photo, or raise GEOAGENT_MAX_IMAGE_BYTES",
            reason="too_large",
        )
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_bytes():
            if cancel.is_set() or time.monotonic() > deadline:
                raise ImageLoadError(
                    f"downloading {url} took longer than {limits.url_timeout_s:g} s",
                    "retry later, download the photo yourself, or raise GEOAGENT_URL_TIMEOUT_S",
                )
            size += len(chunk)
            if size > limit:
                raise ImageLoadError(
                    f"{url} is larger than the {limit / 2**20:.1f} MiB limit",
                    "pass a smaller photo, or raise GEOAGENT_MAX_IMAGE_BYTES",
                    reason="too_large",
                )
            chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise ImageLoadError(
            f"the download of {url} broke off: {type(exc).__name__}: {exc}",
            "retry, or download the photo and pass the local file",
        ) from exc
    if not size:
        raise ImageLoadError(f"{url} returned no data", "check the URL")
    return b"".join(chunks)


def download(url: str, limits: MediaLimits) -> bytes:
    """The body of the photo at ``url`` (ImageLoadError for a refused address, a failed or slow
    download, a web page, or a body over the byte limit)."""
    started = time.monotonic()
    deadline = started + limits.url_timeout_s
    cancel = threading.Event()
    box: dict[str, object] = {}

    def work() -> None:
        try:
            box["data"] = _fetch(url, limits, deadline, cancel)
        except BaseException as exc:  # handed to the waiting caller
            box["error"] = exc

    worker = threading.Thread(target=work, name="geoagent-download", daemon=True)
    worker.start()
    worker.join(timeout=limits.url_timeout_s + 0.05)
    if worker.is_alive():
        cancel.set()
        raise ImageLoadError(
            f"downloading {url} took longer than {limits.url_timeout_s:g} s",
            "retry later, download the photo yourself, or raise GEOAGENT_URL_TIMEOUT_S",
        )
    if "error" in box:
        error = box["error"]
        if isinstance(error, ImageLoadError):
            raise error
        raise ImageLoadError(
            f"could not download {url}: {type(error).__name__}: {error}",
            "check the URL, or download the photo and pass the local file",
        ) from (error if isinstance(error, BaseException) else None)
    data = box["data"]
    assert isinstance(data, bytes)
    logger.info("downloaded %s (%d bytes) in %.2f s", url, len(data), time.monotonic() - started)
    return data
