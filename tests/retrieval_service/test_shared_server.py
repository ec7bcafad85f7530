"""Many clients, one Qdrant server: clients with different data dirs starting at the same time
build the GPS gallery once between them and never delete it; collections are created with the
settings' shard number and replication factor.

The "server" is one ``qdrant-client`` instance in local mode (``":memory:"``) shared by every
client's ``ServerStore``: no Qdrant server binary is available to the tests (and they never touch
the network), so this exercises geoagent's side of the protocol (atomic create, completion
metadata, waiting, no deletion) through the same qdrant-client calls a server gets. The gallery is
cut to 1,500 of GeoCLIP's points to keep it fast.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from retrieval_service.retrieval import gallery
from retrieval_service.retrieval.gallery import ensure_gallery, gallery_name, gallery_ready
from retrieval_service.retrieval.geoclip_heads import GeoClipHeads, gallery_coordinates
from retrieval_service.retrieval.stores import ServerStore, make_store
from tests.waiting import GUARD_S

POINTS = 1500


@pytest.fixture(scope="module")
def heads() -> GeoClipHeads:
    return GeoClipHeads(torch.device("cpu"))


@pytest.fixture()
def server(monkeypatch: pytest.MonkeyPatch):
    """The shared 'server', with every delete_collection it receives recorded."""
    from qdrant_client import QdrantClient

    small = gallery_coordinates()[:POINTS]
    monkeypatch.setattr(gallery, "gallery_coordinates", lambda: small)
    client = QdrantClient(location=":memory:")
    deleted: list[str] = []
    real_delete = client.delete_collection

    def delete(name, *args, **kwargs):
        deleted.append(name)
        return real_delete(name, *args, **kwargs)

    monkeypatch.setattr(client, "delete_collection", delete)
    client.deleted = deleted  # type: ignore[attr-defined]
    return client


class CountingHeads:
    """One client's GeoCLIP heads, counting the locations it encodes."""

    def __init__(self, heads: GeoClipHeads) -> None:
        self.heads, self.encoded = heads, 0

    def encode_locations(self, coords):
        self.encoded += len(coords)
        return self.heads.encode_locations(coords)


def client_settings(tmp_path: Path, n: int):
    from agent.settings import Settings

    return Settings(
        data_dir=tmp_path / f"client{n}",
        qdrant_url="http://qdrant:6333",
        qdrant_shard_number=2,
        qdrant_replication_factor=1,
        gallery_build_stall_s=60,
    )


def test_two_clients_with_different_data_dirs_build_the_gallery_once(tmp_path, server, heads):
    settings = [client_settings(tmp_path, n) for n in (1, 2)]
    assert settings[0].data_dir != settings[1].data_dir
    stores = [
        ServerStore(
            s.qdrant_url,
            shard_number=s.qdrant_shard_number,
            replication_factor=s.qdrant_replication_factor,
            metadata_ttl_s=s.qdrant_metadata_ttl_s,
            client=server,
        )
        for s in settings
    ]
    counters = [CountingHeads(heads), CountingHeads(heads)]
    results: list[object] = [None, None]
    start = threading.Barrier(2)

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = ensure_gallery(settings[i], stores[i], counters[i])
        except BaseException as exc:  # reported below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=GUARD_S)  # the builds' end is the event; GUARD_S only stops a hang
        assert not t.is_alive(), f"a gallery build still runs after {GUARD_S:.0f} s"
    assert results == [POINTS, POINTS]
    assert sorted(c.encoded for c in counters) == [0, POINTS]  # one built, the other waited
    assert server.deleted == []
    assert all(gallery_ready(s, st) for s, st in zip(settings, stores, strict=False))
    assert not any(p.name.startswith(settings[0].gallery_collection) for p in tmp_path.rglob("*"))  # nothing on local disk

    # a third client, a new data dir, later: uses the gallery as it is
    third = CountingHeads(heads)
    late = client_settings(tmp_path, 3)
    store = ServerStore(late.qdrant_url, client=server)
    assert ensure_gallery(late, store, third) == POINTS and third.encoded == 0
    assert server.count(gallery_name(late), exact=True).count == POINTS and server.deleted == []


@pytest.mark.filterwarnings("ignore:Payload indexes")
def test_collections_are_created_with_the_settings_sharding(tmp_path, server, monkeypatch):
    """make_store(settings) connects to the settings' server URL and creates collections with their
    shard number and replication factor (the compose file's cluster profile sets them)."""
    import qdrant_client

    s = client_settings(tmp_path, 1).model_copy(update={"qdrant_shard_number": 3, "qdrant_replication_factor": 2})
    connected: list[dict] = []
    monkeypatch.setattr(qdrant_client, "QdrantClient", lambda **kw: connected.append(kw) or server)
    sent: list[dict] = []
    real_create = server.create_collection

    def create(name, **kwargs):
        sent.append(kwargs)
        return real_create(name, **kwargs)

    monkeypatch.setattr(server, "create_collection", create)
    store = make_store(s)
    assert isinstance(store, ServerStore) and connected[0]["url"] == "http://qdrant:6333"
    assert store.create_collection("things", 8) is True
    assert store.create_collection("things", 8) is False  # a second create reports "someone else has it"
    assert len(sent) == 1 and sent[0]["shard_number"] == 3 and sent[0]["replication_factor"] == 2
