"""The one probability model on synthetic scenarios with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from agent.decision import rules
from agent.decision.mixture import Component, Mixture
from agent.decision.sources import Mixtures, build_mixture
from agent.decision.summary import low_probability_warning, prediction_fields, summarise
from agent.settings import Settings
from retrieval_service.core.geo import distance_km
from retrieval_service.core.types import Candidate, Verification

ROME, MADRID = (41.90, 12.50), (40.42, -3.70)


def _gallery(lat: float, lon: float, p: float, score: float = 0.3, filtered: bool = False, **payload) -> Candidate:
    return Candidate(lat=lat, lon=lon, score=score, probability=p, source="gallery", filtered=filtered, payload=payload or None)


def _choose(options, candidates):
    return rules.choose(options, build_mixture(candidates))


def _support(lat, lon, candidates):
    return rules.support_within(build_mixture(rules.retrieval_candidates(candidates)), lat, lon)


def test_two_sources_on_different_scales_both_count():
    """Rome: three gallery points (cosines 0.3, GeoCLIP probability 0.2 each); Madrid: two database
    photos (cosines 0.9). Each source is a distribution on its own scale: both places are modes with
    their source's share, and the database's higher cosines do not erase the gallery."""
    rome = [_gallery(ROME[0] + 0.01 * i, ROME[1], 0.2) for i in range(3)]
    madrid = [Candidate(lat=MADRID[0] + 0.01 * i, lon=MADRID[1], score=0.9, source="database") for i in range(2)]
    mix = build_mixture(rome + madrid)
    modes = mix.modes()
    near = {
        name: sum(md.mass for md in modes if distance_km(md.lat, md.lon, *where) < 20)
        for name, where in (("rome", ROME), ("madrid", MADRID))
    }
    assert near["rome"] == pytest.approx(0.3, abs=1e-6)  # 0.6 of the gallery's half
    assert near["madrid"] == pytest.approx(0.5, abs=1e-6)  # all of the database's half
    # raising every database cosine by the same amount changes nothing (a softmax is shift-invariant)
    shifted = [c.model_copy(update={"score": c.score + 0.05}) for c in madrid]
    assert build_mixture(rome + shifted).modes()[0].mass == pytest.approx(modes[0].mass)


def test_four_scattered_candidates_give_the_most_probable_one():
    pts = [
        _gallery(48.86, 2.35, 0.10),
        _gallery(35.68, 139.65, 0.25),
        _gallery(40.71, -74.0, 0.08),
        _gallery(-33.87, 151.21, 0.12),
    ]
    choice = _choose([], pts)
    assert distance_km(choice.chosen.lat, choice.chosen.lon, 35.68, 139.65) < 1
    assert len(choice.alternatives) == 3


def test_cluster_across_the_antimeridian():
    pts = [_gallery(-17.8, 179.95, 0.2), _gallery(-17.8, -179.95, 0.2), _gallery(-17.75, 179.99, 0.2), _gallery(10.0, 0.0, 0.25)]
    mix = build_mixture(pts)
    top = mix.modes()[0]
    assert top.mass == pytest.approx(0.6) and len(top.members) == 3
    assert abs(abs(top.lon) - 180) < 0.2 and abs(top.lat + 17.78) < 0.1
    assert mix.probabilities(top.lat, top.lon)["200"] > 0.55


def test_a_zoom_search_does_not_support_its_own_hypothesis():
    base = [_gallery(*ROME, 0.3), _gallery(*MADRID, 0.3)]
    before = _support(*MADRID, base)
    zoom = [_gallery(MADRID[0] + 0.02 * i, MADRID[1], 0.001, filtered=True) for i in range(10)]
    assert _support(*MADRID, base + zoom) == pytest.approx(before)
    assert _choose([], base + zoom).chosen.probability == _choose([], base).chosen.probability


def test_verification_is_not_counted_twice():
    """Verifying a gallery point returns its own retrieval score: the choice and the confidence must
    be the same with and without it."""
    cands = [_gallery(*ROME, 0.3, score=0.31), _gallery(*MADRID, 0.25, score=0.30)]
    options = rules.build_options(cands, [], support=build_mixture(cands))
    verified = rules.attach_verification(
        options, Verification(ranked=[Candidate(lat=c.lat, lon=c.lon, score=c.score, source="gallery") for c in cands])
    )
    plain, checked = _choose(options, cands), _choose(verified, cands)
    assert (checked.chosen.lat, checked.chosen.lon, checked.confidence) == (plain.chosen.lat, plain.chosen.lon, plain.confidence)


def test_confidence_does_not_move_when_top_k_adds_far_low_probability_candidates():
    rng = np.random.default_rng(3)
    near = [_gallery(ROME[0] + 0.02 * i, ROME[1], 0.15) for i in range(4)]
    far = [_gallery(float(rng.uniform(-50, 60)), float(rng.uniform(-170, 170)), 0.0005) for _ in range(30)]
    c5 = _choose([], near).confidence
    c35 = _choose([], near + far).confidence
    assert abs(c35 - c5) < 0.01, (c5, c35)


def test_probabilities_are_monotone_and_areas_nested():
    mix = build_mixture([_gallery(*ROME, 0.5), _gallery(*MADRID, 0.3)])
    top = mix.mode()
    s = summarise(mix, top.lat, top.lon)
    values = [s.probabilities[k] for k in ("1", "25", "200", "750", "2500")]
    assert values == sorted(values) and values[0] >= 0 and values[-1] <= 1
    assert 0 < s.search_area_km2["50"] < s.search_area_km2["90"]
    assert s.surface is not None and s.surface.heat and set(s.surface.regions) == {"50", "90"}
    assert all(not p.outline or p.outline[0] == p.outline[-1] for p in s.surface.regions["90"])  # no outline: the Earth


def test_a_single_known_spread_has_the_analytic_probability():
    """One vMF kernel of 1-sigma spread s: P(error <= s) = 1 - exp(-1/2) (Rayleigh), area_50 = 2 ln2 pi s^2."""
    mix = Mixture([Component(10.0, 20.0, 1.0, 30.0, "test")])
    assert mix.prob_within(10.0, 20.0, [30.0])[0] == pytest.approx(1 - np.exp(-0.5), abs=0.02)
    assert mix.search_areas()["50"] == pytest.approx(2 * np.log(2) * np.pi * 30.0**2, rel=0.05)


def test_lmm_answer_far_from_the_evidence_is_warned_about():
    tools = build_mixture([_gallery(*ROME, 0.6), _gallery(ROME[0] + 0.01, ROME[1], 0.3)])
    assert low_probability_warning(tools, *ROME) is None
    warning = low_probability_warning(tools, -33.87, 151.21)
    assert warning and "low probability" in warning


def test_vote_combines_sampled_answers():
    proposals = [Candidate(lat=ROME[0] + 0.01 * i, lon=ROME[1], source="lmm") for i in range(3)]
    proposals.append(Candidate(lat=MADRID[0], lon=MADRID[1], source="lmm"))
    mix = Mixtures().vote(proposals)
    assert distance_km(mix.mode().lat, mix.mode().lon, *ROME) < 5 and mix.modes()[0].mass == pytest.approx(0.75)


def test_prediction_fields_without_evidence_are_uniform(tmp_path):
    fields = prediction_fields(None, 0.0, 0.0, settings=Settings(data_dir=tmp_path), mode="policy")
    assert fields["confidence"] < 1e-3 and fields["calibrated"] is False
    assert fields["search_area_km2"]["90"] > 4e8


def test_one_runs_evidence_is_modelled_once():
    """The options' support, the rule's choice and the Prediction's fields all ask for the mixture of
    the same evidence: it is built, sampled and mean-shifted once, not once per question."""
    rome = [_gallery(ROME[0] + 0.01 * i, ROME[1], 0.2) for i in range(3)]
    madrid = [Candidate(lat=MADRID[0], lon=MADRID[1], score=0.9, source="database")]
    mixtures = Mixtures()
    first = mixtures.of(rome + madrid)
    samples, modes = first.samples()[0], first.modes()
    again = mixtures.of([c.model_copy() for c in rome + madrid])
    assert again is first and mixtures.built == 1
    assert again.samples()[0] is samples and again.modes() == modes
    assert mixtures.of(rome) is not first and mixtures.built == 2  # other evidence, another mixture
    assert Mixtures().of(rome + madrid) is not first  # another run builds its own


def test_fast_density_equals_the_exact_sum():
    """The float32 density (kernel values below float32's normal range dropped) agrees with the
    exact float64 sum, at the samples and far from every component (only the uniform part left)."""
    comps = [
        Component(ROME[0], ROME[1], 0.5, 25.0, "gallery"),
        Component(MADRID[0], MADRID[1], 0.3, 10.0, "database"),
        Component(-33.9, 151.2, 0.15, 0.05, "exif"),
        Component(0.0, 0.0, 0.05, None, "gallery"),
    ]
    mix = Mixture(comps)
    x, dens = mix.samples()
    far = np.array([[0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])  # the north pole, the Pacific
    exact = mix._kernel(np.vstack([x, far])) @ mix.weights
    fast = np.concatenate([dens, mix.density_xyz(far)])
    np.testing.assert_allclose(fast, exact, rtol=1e-5)
    assert fast[-1] == pytest.approx(0.05 / (4 * np.pi), rel=1e-6)


def test_the_decision_runs_on_one_blas_thread_and_restores_the_setting():
    """The decision's small products run on one BLAS thread (threads cost more than they save on a
    busy machine); nested and finished calls leave numpy's BLAS as they found it."""
    from threadpoolctl import ThreadpoolController

    from agent.decision.blas import one_blas_thread, single_blas_thread

    def blas_threads() -> set[int]:
        return {lib.num_threads for lib in ThreadpoolController().select(user_api="blas").lib_controllers}

    seen: list[set[int]] = []
    before = blas_threads()
    mix = Mixture([Component(*ROME, 1.0, 25.0, "gallery"), Component(*MADRID, 1.0, 25.0, "gallery")])
    original = Mixture.density_xyz.__wrapped__

    def spy(self, x):
        seen.append(blas_threads())
        return original(self, x)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Mixture, "density_xyz", single_blas_thread(spy))
        mix.samples()
        with one_blas_thread():
            mix.modes()
            assert blas_threads() == {1}
    assert seen and all(s == {1} for s in seen)
    assert blas_threads() == before
