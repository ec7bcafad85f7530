"""OCR on text drawn with PIL, script detection, gazetteer matching."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from retrieval_service.evidence.gazetteer import Gazetteer
from retrieval_service.evidence.ocr import TextReader
from retrieval_service.evidence.scripts import detect_scripts
from tests.tools.conftest import draw_text


@pytest.fixture(scope="module")
def gazetteer() -> Gazetteer:
    return Gazetteer()


@pytest.fixture(scope="module")
def reader(gazetteer) -> TextReader:
    return TextReader(gazetteer=gazetteer)


def test_drawn_street_sign_yields_paris_france(reader, tmp_path: Path):
    path = draw_text(tmp_path / "sign.png", ["Rue de Rivoli, Paris"])
    reading = reader.read(Image.open(path))
    text = " ".join(line.text for line in reading.lines)
    assert "Rivoli" in text and "Paris" in text
    assert all(0.5 <= line.confidence <= 1 for line in reading.lines)
    assert reading.scripts == ["Latin"]
    top = reading.places[0]
    assert (top.name, top.country_code) == ("Paris", "FR")
    assert top.lat == pytest.approx(48.85, abs=0.1)


def test_real_photo_with_a_sign(reader, dev_images: Path):
    photo = dev_images / "113823369_54ebe138ba_38_87434398@N00.jpg"  # a town-office sign in the dev set
    if not photo.is_file():
        pytest.skip(f"{photo.name} is not in the dev set")
    reading = reader.read(Image.open(photo))
    assert any("VERNON" in line.text.upper() for line in reading.lines)
    assert "Latin" in reading.scripts
    assert any(p.name == "Vernon" and p.country_code == "US" for p in reading.places)


def test_blank_image_reads_nothing(reader):
    reading = reader.read(Image.new("RGB", (640, 480), (128, 128, 128)))
    assert reading.lines == [] and reading.scripts == [] and reading.places == []


def test_gazetteer_prefers_larger_places_and_skips_common_words(gazetteer):
    found = gazetteer.find("Welcome to the Hotel Berlin, Main Street")
    assert found[0].name == "Berlin" and found[0].country_code == "DE"
    assert all(p.name.lower() not in {"hotel", "main", "street", "welcome"} for p in found)
    assert gazetteer.find("") == []
    assert gazetteer.find("a an to of") == []


def test_gazetteer_accents_and_phrases(gazetteer):
    assert gazetteer.find("ZÜRICH HB")[0].country_code == "CH"
    assert gazetteer.find("Los Angeles International")[0].name == "Los Angeles"


@pytest.mark.parametrize(
    ("text", "scripts"),
    [
        ("Rue de Rivoli", ["Latin"]),
        ("Москва", ["Cyrillic"]),
        ("Αθήνα", ["Greek"]),
        ("서울특별시", ["Hangul"]),
        ("東京", ["Han (CJK)"]),
        ("カタカナ", ["Kana"]),
        ("שלום", ["Hebrew"]),
        ("مرحبا", ["Arabic"]),
        ("नमस्ते", ["Devanagari"]),
        ("กรุงเทพ", ["Thai"]),
        ("12345 !?", []),
    ],
)
def test_scripts(text, scripts):
    assert detect_scripts(text) == scripts


def test_mixed_scripts_most_letters_first():
    assert detect_scripts("Tokyo 東京都 station") == ["Latin", "Han (CJK)"]
