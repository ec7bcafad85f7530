from pathlib import Path

import pytest

from evals.datasets import load_dataset
from retrieval_service.core.errors import DatasetError


def _images(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"x")
    return folder


def test_im2gps3k_layout(tmp_path):
    images = _images(tmp_path / "img", ["a.jpg", "b.jpg"])
    csv = tmp_path / "im2gps3k_places365.csv"
    csv.write_text("IMG_ID,AUTHOR,LAT,LON,S3_Label,S16_Label\na.jpg,me,48.85,2.35,1,2\nb.jpg,you,-33.9,151.2,0,3\n")
    ds = load_dataset("im2gps3k", csv, images)
    assert [(i.id, i.lat, i.lon) for i in ds.items] == [("a.jpg", 48.85, 2.35), ("b.jpg", -33.9, 151.2)]
    assert ds.missing == [] and ds.columns == {"id": "IMG_ID", "lat": "LAT", "lon": "LON"}


def test_swapped_columns_are_read_by_name(tmp_path):
    images = _images(tmp_path / "img", ["a.jpg"])
    csv = tmp_path / "yfcc4k_places365.csv"
    csv.write_text("LON,IMG_ID,LAT\n2.35,a.jpg,48.85\n")
    item = load_dataset("yfcc4k", csv, images).items[0]
    assert (item.lat, item.lon) == (48.85, 2.35)


def test_ids_without_extension_and_generic_columns(tmp_path):
    images = _images(tmp_path / "img", ["p1.jpg", "p2.png"])
    csv = tmp_path / "mine.csv"
    csv.write_text("lng,photo,latitude_deg\n10,p1,20\n11,p2,21\n")
    ds = load_dataset("csv", csv, images, id_col="photo", lat_col="latitude_deg")
    assert [(i.id, i.image.name, i.lat, i.lon) for i in ds.items] == [("p1", "p1.jpg", 20, 10), ("p2", "p2.png", 21, 11)]


def test_missing_images_reported_and_excluded(tmp_path, caplog):
    images = _images(tmp_path / "img", ["a.jpg"])
    csv = tmp_path / "l.csv"
    csv.write_text("IMG_ID,LAT,LON\na.jpg,1,2\ngone1.jpg,3,4\ngone2.jpg,5,6\n")
    ds = load_dataset("im2gps", csv, images)
    assert [i.id for i in ds.items] == ["a.jpg"]
    assert ds.missing == ["gone1.jpg", "gone2.jpg"]
    assert "2 image(s) missing" in ds.describe_missing() and "gone1.jpg" in ds.describe_missing()
    assert "gone1.jpg" in caplog.text


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("", "is empty"),
        ("IMG_ID,LAT,LON\n", "no rows"),
        ("IMG_ID,LAT\na.jpg,1\n", "no lon column"),
        ("IMG_ID,LAT,LON\na.jpg,north,2\n", "bad coordinates"),  # no row left to evaluate
        ("IMG_ID,LAT,LON\na.jpg,95,2\n", "bad coordinates"),
        ("IMG_ID,LAT,LON\nzzz.jpg,1,2\n", "none of the 1 ids"),
    ],
)
def test_bad_csvs(tmp_path, content, fragment):
    images = _images(tmp_path / "img", ["a.jpg"])
    csv = tmp_path / "l.csv"
    csv.write_text(content)
    with pytest.raises(DatasetError) as err:
        load_dataset("im2gps3k", csv, images)
    assert fragment in err.value.message and err.value.hint


def test_bad_arguments(tmp_path):
    images = _images(tmp_path / "img", ["a.jpg"])
    csv = tmp_path / "l.csv"
    csv.write_text("IMG_ID,LAT,LON\na.jpg,1,2\n")
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset("imagenet", csv, images)
    with pytest.raises(DatasetError, match="labels CSV not found"):
        load_dataset("im2gps3k", tmp_path / "nope.csv", images)
    with pytest.raises(DatasetError, match="image folder not found"):
        load_dataset("im2gps3k", csv, tmp_path / "nope")
    with pytest.raises(DatasetError, match="no column named 'latitude'"):
        load_dataset("csv", csv, images, lat_col="latitude")


def test_real_dev_labels(dev_labels, dev_images):
    ds = load_dataset("im2gps3k", dev_labels, dev_images)
    assert len(ds.items) + len(ds.missing) == 256
    assert ds.missing == []


def test_bad_rows_are_recorded_not_fatal(tmp_path):
    """One bad coordinate or a repeated id once refused the whole run; now each is a recorded bad row."""
    images = _images(tmp_path / "img", ["a.jpg", "b.jpg", "c.jpg"])
    (tmp_path / "secret.jpg").write_bytes(b"outside")
    csv = tmp_path / "l.csv"
    csv.write_text(
        "IMG_ID,LAT,LON\na.jpg,1,2\nb.jpg,north,2\na.jpg,3,4\n,5,6\nc.jpg,95,2\n"
        f"{tmp_path / 'secret.jpg'},1,1\n../secret.jpg,1,1\nsub/../../secret.jpg,1,1\nb.jpg,7,8\n"
    )
    ds = load_dataset("im2gps3k", csv, images)
    assert [it.id for it in ds.items] == ["a.jpg", "b.jpg"] and ds.items[1].lat == 7
    reasons = {bad.line: bad.reason for bad in ds.invalid}
    assert set(reasons) == {3, 4, 5, 6, 7, 8, 9}
    assert "bad coordinates" in reasons[3] and "repeats the id 'a.jpg'" in reasons[4] and "empty id" in reasons[5]
    assert all("outside the image folder" in reasons[n] for n in (7, 8, 9))
    assert all(it.image.parent == images for it in ds.items)
