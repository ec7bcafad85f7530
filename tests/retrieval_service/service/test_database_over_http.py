"""The image database through the client: neighbours found over HTTP are the in-process ones."""

from __future__ import annotations

import pytest

from retrieval_service.retrieval.ingest import ingest_csv


def test_database_neighbours_over_http(inprocess, remote, resolve, dev_images, dev_labels, tmp_path):
    rows = dev_labels.read_text().splitlines()[:7]
    csv = tmp_path / "some.csv"
    csv.write_text("\n".join(rows) + "\n")
    assert ingest_csv(inprocess, csv, dev_images, batch_size=4).added == 6
    first_id = rows[1].split(",")[0]
    query = resolve(dev_images / first_id)
    here = inprocess.search(query, k_gallery=2, k_database=3, dissimilar=2)
    there = remote.search(query, k_gallery=2, k_database=3, dissimilar=2)
    assert there == here
    assert there.database[0].payload["id"] == first_id and there.database[0].score == pytest.approx(1, abs=1e-4)
    assert len(there.dissimilar) == 2 and all(c.source == "database" for c in there.dissimilar)
    assert remote.has_database() and inprocess.has_database()
