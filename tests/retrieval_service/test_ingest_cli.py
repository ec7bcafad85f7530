"""`index build` / `index info`: CSV layouts, resume, unreadable images, bad CSVs, the CLI."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from agent.cli import app, main
from retrieval_service.core.errors import DatasetError
from retrieval_service.core.photo import Photo
from retrieval_service.retrieval.ingest import ingest_csv, read_rows
from retrieval_service.retrieval.retriever import Retriever


@pytest.fixture()
def small_set(dev_images, dev_labels, tmp_path):
    """6 dev photos (IM2GPS3k layout) plus one missing and one corrupt image."""
    rows = dev_labels.read_text().splitlines()
    images = tmp_path / "images"
    images.mkdir()
    for line in rows[1:7]:
        shutil.copy(dev_images / line.split(",")[0], images)
    (images / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    csv = tmp_path / "labels.csv"
    csv.write_text("\n".join([*rows[:7], "missing.jpg,someone,10.0,10.0", "corrupt.jpg,someone,11.0,11.0"]) + "\n")
    return csv, images


def test_ingest_counts_unreadable_and_resumes(tiny_settings, small_set):
    csv, images = small_set
    r = Retriever.from_settings(tiny_settings)
    first = ingest_csv(r, csv, images, batch_size=4)
    assert (first.added, first.unreadable, first.skipped_existing, first.total_in_collection) == (6, 2, 0, 6)
    second = ingest_csv(r, csv, images, batch_size=4)
    assert (second.added, second.skipped_existing, second.unreadable, second.total_in_collection) == (0, 6, 2, 6)
    first = Photo.resolve(images / csv.read_text().splitlines()[1].split(",")[0], tiny_settings.cache_dir)
    hit = r.store.search(tiny_settings.database_collection, r.embed_images([first])[0], 1)[0]
    assert hit.payload["extra"]["AUTHOR"] and hit.payload["path"].startswith(str(images))
    r.close()


def test_mp16_layout_and_custom_columns(tmp_path):
    mp16 = tmp_path / "mp16.csv"
    mp16.write_text("IMG_ID,LAT,LON\na/b.jpg,1.5,2.5\nc.jpg,91,0\n")
    frame, bad = read_rows(mp16)
    assert list(frame["id"]) == ["a/b.jpg"] and list(frame["path"]) == ["a/b.jpg"] and bad == 1
    custom = tmp_path / "custom.csv"
    custom.write_text("key,file,y,x\nk1,img/1.png,10,20\n")
    frame, _ = read_rows(custom, id_col="key", lat_col="y", lon_col="x", path_col="file")
    assert frame.iloc[0][["id", "path", "lat", "lon"]].tolist() == ["k1", "img/1.png", 10.0, 20.0]


def test_empty_csv(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DatasetError, match="empty"):
        read_rows(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text("IMG_ID,LAT,LON\n")
    with pytest.raises(DatasetError, match="no rows"):
        read_rows(header_only)


def test_csv_without_coordinate_columns_names_what_it_found(tmp_path):
    csv = tmp_path / "nocoords.csv"
    csv.write_text("IMG_ID,AUTHOR\na.jpg,me\n")
    with pytest.raises(DatasetError) as err:
        read_rows(csv)
    assert "columns: IMG_ID, AUTHOR" in err.value.message and "--lat-col" in err.value.hint
    with pytest.raises(DatasetError, match="--lon-col"):
        read_rows(csv, lat_col="AUTHOR")


def test_cli_build_and_info(tiny_env, small_set):
    csv, images = small_set
    runner = CliRunner()
    out = runner.invoke(app, ["index", "build", str(csv), "--images", str(images), "--batch-size", "3", "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["added"] == 6 and report["unreadable"] == 2
    again = runner.invoke(app, ["index", "build", str(csv), "--images", str(images)])
    assert again.exit_code == 0 and "already present 6" in again.stdout
    info = runner.invoke(app, ["index", "info", "--json"])
    data = json.loads(info.stdout)
    assert data["collections"]["image_database"] == {"points": 6, "dim": 768}
    from agent.settings import load_settings
    from retrieval_service.retrieval.gallery import gallery_name

    assert data["collections"][gallery_name(load_settings())] is None and data["gallery_ready"] is False
    text = runner.invoke(app, ["index", "info"])
    assert "image database: collection image_database: 6 photos, 768-d" in text.stdout


def test_cli_bad_csv_is_a_clear_error(tiny_env, tmp_path, capsys):
    csv = tmp_path / "bad.csv"
    csv.write_text("name,value\nx,1\n")
    assert main(["index", "build", str(csv), "--images", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no latitude column found" in err and "fix: pass --lat-col" in err
    assert "Traceback" not in err


def test_cli_help_explains_every_option():
    out = CliRunner().invoke(app, ["index", "build", "--help"])
    for flag in ("--images", "--id-col", "--lat-col", "--lon-col", "--path-col", "--batch-size", "--collection"):
        assert flag in out.stdout
