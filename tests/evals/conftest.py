from pathlib import Path

import pytest

GT = [
    ("a.jpg", 48.8566, 2.3522),
    ("b.jpg", 51.5074, -0.1278),
    ("c.jpg", 40.7128, -74.006),
    ("d.jpg", -33.8688, 151.2093),
    ("broken1.jpg", 35.6762, 139.6503),
    ("e.jpg", 55.7558, 37.6173),
]


@pytest.fixture()
def small_bench(tmp_path: Path) -> tuple[Path, Path]:
    """(images dir, labels CSV) in the IM2GPS3k layout; 'broken1.jpg' makes the fake predictor fail,
    'gone.jpg' has no image file."""
    images = tmp_path / "images"
    images.mkdir()
    for name, _, _ in GT:
        (images / name).write_bytes(b"x")
    labels = tmp_path / "labels.csv"
    rows = [f"{n},someone,{lat},{lon},1" for n, lat, lon in GT] + ["gone.jpg,someone,1.0,1.0,1"]
    labels.write_text("IMG_ID,AUTHOR,LAT,LON,S3_Label\n" + "\n".join(rows) + "\n")
    return images, labels
