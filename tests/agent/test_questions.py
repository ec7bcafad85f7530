"""Questions answered without an LMM, from the probability model the Prediction keeps: "could it
be X?" for a country, region or city resolved offline is answered with P(X) integrated from the
run's mixture; "what text did you read?" from the typed evidence. Before, "could it be Norway?"
returned the analysis again with a list of coordinates."""

from __future__ import annotations

import re

import numpy as np
import pytest

from agent.conversation.places import asked_place, probability_in, resolve
from agent.conversation.rules import rule_answer
from agent.decision.kept import from_model, to_model
from agent.decision.mixture import Component, Mixture
from agent.prediction import Prediction
from agent.state import Observations
from retrieval_service.evidence.gazetteer import PlaceMatch
from retrieval_service.evidence.ocr import TextLine, TextReading

PARIS, MILAN = "FujiFilm_FinePixS2Pro.jpg", "HTC_Desire.jpg"


def probability(reply: str) -> float:
    """The P(...) the reply states, as a fraction."""
    match = re.search(r"P\(taken [^)]*\)\)? ≈ (?:([\d.]+)%|0 \(none)", reply)
    assert match, reply
    return float(match.group(1)) / 100 if match.group(1) else 0.0


@pytest.fixture(scope="module")
def exif_predictions(exif_dir, tiny_model_config, tmp_path_factory):
    from agent import load_agent
    from agent.settings import Settings

    settings = Settings(
        data_dir=tmp_path_factory.mktemp("questions"),
        qdrant_url=None,
        image_model=str(tiny_model_config),
        image_pretrained="none",
        device="cpu",
        segmenter="none",
        llm_model=None,
    )
    agent = load_agent(settings)
    return {name: agent.invoke({"image": str(exif_dir / name)}) for name in (PARIS, MILAN)}


def test_could_it_be_france_on_a_photo_taken_in_paris_and_one_in_milan(exif_predictions):
    paris, milan = exif_predictions[PARIS], exif_predictions[MILAN]
    assert paris.model is not None and paris.model.version == 1
    in_paris = rule_answer("could it be France?", [paris])
    assert probability(in_paris) >= 0.99 and "Ile-de-France" in in_paris
    in_milan = rule_answer("Could it be France instead?", [milan])
    assert probability(in_milan) < 0.01 and "Lombardy" in in_milan  # says where the photo is instead
    assert probability(rule_answer("is it in Italy?", [milan])) >= 0.99
    assert probability(rule_answer("what about Lombardy?", [milan])) >= 0.99  # a region (GeoNames admin1)
    assert probability(rule_answer("how likely is Paris?", [paris])) >= 0.99  # a city: within 25 km
    assert probability(rule_answer("could it be Minnesota instead?", [paris])) == 0.0


def test_the_place_question_uses_the_kept_model_not_the_reported_point():
    """Two modes 1500 km apart: P(country) is the mass in each, whichever point was reported."""
    mixture = Mixture([Component(59.91, 10.75, 0.7, 25, "gallery"), Component(45.46, 9.19, 0.3, 25, "gallery")])
    pred = Prediction(image="x.jpg", lat=45.46, lon=9.19, confidence=0.3, source="gallery", model=to_model(mixture))
    assert probability(rule_answer("could it be Norway?", [pred])) == pytest.approx(0.7, abs=0.03)
    assert probability(rule_answer("could it be Italy?", [pred])) == pytest.approx(0.3, abs=0.03)
    norway = probability_in(pred.model, resolve("Norway"))
    assert norway.parts and norway.parts[0][0] in ("Oslo", "Akershus")  # where in Norway the mass lies: its regions
    assert from_model(to_model(mixture)).probabilities(59.91, 10.75) == mixture.probabilities(59.91, 10.75)
    rng = np.random.default_rng(0)  # what keeping the model costs: a gallery run's ~150 components, < 50 bytes each
    many = [
        Component(float(rng.uniform(-60, 70)), float(rng.uniform(-180, 180)), float(rng.random()), 30.0, "gallery")
        for _ in range(150)
    ]
    assert len(to_model(Mixture(many)).model_dump_json()) < 50 * 150


def test_names_are_resolved_offline_as_country_region_or_city():
    assert resolve("Norway").country_code == "NO" and resolve("the UK").country_code == "GB"
    assert resolve("USA").kind == "country" and resolve("Czechia").country_code == "CZ"
    minnesota = resolve("Minnesota")
    assert (minnesota.kind, minnesota.country_code) == ("region", "US")
    paris = resolve("Paris")
    assert (paris.kind, paris.country_code, paris.radius_km) == ("city", "FR", 25.0)
    assert resolve("Xyzzyland") is None
    assert asked_place("could it be Minnesota instead?") == "Minnesota"
    assert asked_place("Is it in the country of Norway?") == "Norway"
    assert asked_place("what's the probability of Bavaria") is None or asked_place("probability of Bavaria") == "Bavaria"
    assert asked_place("why?") is None


def test_unknown_places_and_old_predictions_are_said_so():
    pred = Prediction(image="x.jpg", lat=1.0, lon=2.0, confidence=0.1, source="gallery")  # saved before the model was kept
    assert "before geoagent kept its probability model" in rule_answer("could it be Norway?", [pred])
    assert "do not know a country, region or town called 'Xyzzyland'" in rule_answer("could it be Xyzzyland?", [pred])
    assert "attach one with /image" in rule_answer("could it be Norway?", [])


def test_what_text_did_you_read_comes_from_the_typed_evidence():
    pred = Prediction(image="x.jpg", lat=48.85, lon=2.35, confidence=0.1, source="ocr")
    obs = Observations(
        text=TextReading(
            lines=[TextLine(text="Rue de Rivoli", confidence=0.9), TextLine(text="Boulangerie", confidence=0.8)],
            scripts=["Latin"],
            places=[
                PlaceMatch(
                    name="Paris", region="Ile-de-France", country_code="FR", lat=48.85, lon=2.35, exact=True, words=1, size=50
                )
            ],
        )
    )
    reply = rule_answer("What text did you read?", [pred], obs=obs)
    assert "'Rue de Rivoli'" in reply and "Paris (FR)" in reply and "Latin" in reply
    assert pred.rationale not in reply or not pred.rationale  # not the whole analysis again
    assert rule_answer("what text did you read?", [pred]) == "The analysis did not read text in this photo (no OCR step ran)."


def test_follow_ups_on_a_thread_without_an_lmm_integrate_the_model(exif_dir, tiny_settings):
    from langgraph.checkpoint.memory import InMemorySaver

    from agent import load_agent
    from agent.conversation.threads import Threads

    threads = Threads(load_agent(tiny_settings.model_copy(update={"segmenter": "none"}), checkpointer=InMemorySaver()))
    tid, _ = threads.create(str(exif_dir / MILAN))
    reply = threads.ask(tid, "could it be Norway?").reply
    assert probability(reply) == 0.0 and "Pero" in reply
    assert "camera" in threads.ask(tid, "what camera was it?").reply.lower()
