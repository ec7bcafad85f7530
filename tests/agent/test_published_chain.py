"""The published second stage (DualGeo, G3, Img2Loc) as the scripted OpenAI-compatible server sees
it: the prompts of modes rag and agent hold the image database's neighbours as "similar", in the
order of DualGeo's re-rank (main cluster first), the same database's farthest photos as
"dissimilar", and the GPS gallery's points separately, named as what they are. The re-rank is the
real cluster_candidates tool."""

from __future__ import annotations

import json
import re

from agent import load_agent
from evals.fake_llm_server import FakeOpenAI, Reply
from retrieval_service.core.geo import distance_km
from tests.agent.fakes import PARIS, make_fake_tools
from tools import Services, make_tools

ROME = [(41.90, 12.50, 0.95), (41.85, 12.60, 0.94)]
TOKYO = [(35.68, 139.65, 0.93)]
LYON = [(45.76, 4.84, 0.90), (45.70, 4.80, 0.89), (45.80, 4.95, 0.88)]
FAR = [(-33.9, 18.4, -0.21), (64.1, -21.9, -0.2), (-41.3, 174.8, -0.19)]
FINAL = {"lat": 45.76, "lon": 4.84, "confidence": 0.6, "rationale": "the Lyon photos"}


def _retrieve_with_database(image: str, k: int | None = None, dissimilar: int = 0, **_: object) -> dict:
    gallery = [{"lat": PARIS[0] + 0.02 * i, "lon": PARIS[1], "score": 0.3 - 0.01 * i, "country_code": "FR"} for i in range(4)]
    database = [{"lat": a, "lon": b, "score": s, "id": f"photo{i}"} for i, (a, b, s) in enumerate(ROME + TOKYO + LYON)]
    far = [{"lat": a, "lon": b, "score": s, "id": f"far{i}"} for i, (a, b, s) in enumerate(FAR)]
    return {"gallery": gallery, "database": database, "dissimilar": far[:dissimilar], "filter": None}


def _tools(settings, *, database: bool, calls: list | None = None) -> list:
    """The canned tools, with the real re-rank (cluster_candidates)."""
    real = {t.name: t for t in make_tools(Services(settings))}
    overrides = {"retrieve": _retrieve_with_database} if database else {}
    fakes = make_fake_tools(overrides=overrides, calls=calls)
    return [real["cluster_candidates"] if t.name == "cluster_candidates" else t for t in fakes]


def _database_rows(rows: list[tuple[float, float, float]]) -> list[list[float]]:
    return [[round(a, 4), round(b, 4), round(s, 4)] for a, b, s in rows]


def _list_after(text: str, marker: str) -> list:
    """The JSON list that follows ``marker`` in a prompt."""
    start = text.index(marker) + len(marker)
    found = re.search(r"\[\[.*?\]\]", text[start:], re.S)
    assert found is not None, f"no list after {marker!r} in {text!r}"
    return json.loads(found.group(0))


def _user_texts(body: dict) -> list[str]:
    out = []
    for m in body["messages"]:
        if m["role"] != "user":
            continue
        content = m["content"]
        parts = content if isinstance(content, list) else [{"type": "text", "text": content}]
        out += [p["text"] for p in parts if p.get("type") == "text"]
    return out


# the re-rank's order: the Lyon cluster (3 photos, the most members) first, the real photo nearest its
# mean leading; then the rest by distance to it: Rome (a 2-photo cluster, ~750 km), Tokyo. By score
# alone it would have been Rome, Rome, Tokyo, Lyon...
RERANKED = _database_rows([LYON[0], LYON[1], LYON[2], ROME[0], ROME[1], TOKYO[0]])


def test_rag_prompts_hold_the_database_neighbours_in_rerank_order_and_its_farthest_as_dissimilar(agent_settings, photo):
    settings = agent_settings.model_copy(update={"rag_samples": 1})
    calls: list = []
    script = [Reply(calls=[("propose_location", {"lat": 45.76, "lon": 4.84})]) for _ in range(4)]
    with FakeOpenAI(script) as server:
        agent = load_agent(
            settings, mode="rag", chat_model=server.chat_model(), tools=_tools(settings, database=True, calls=calls)
        )
        pred = agent.invoke({"image": str(photo)})
    assert server.violations == [] and len(server.requests) == 4
    retrieve = [kw for name, kw in calls if name == "retrieve"]
    assert retrieve and retrieve[0]["dissimilar"] == 15  # the farthest photos were asked for
    texts = [_user_texts(r.body)[0] for r in server.requests]
    assert "similar" not in texts[0]  # G3's zero-shot prompt
    five, ten = texts[1], texts[2]
    assert _list_after(five, "similar photos from an image database") == RERANKED[:5]
    assert _list_after(ten, "similar photos from an image database") == RERANKED  # 6 photos in all
    assert _list_after(five, "dissimilar photos from the same database") == _database_rows(FAR)
    gallery = _list_after(five, "Candidate coordinates from the GPS gallery")
    assert [row[:2] for row in gallery] == [[round(PARIS[0] + 0.02 * i, 4), PARIS[1]] for i in range(4)]
    assert "they are not photos" in five
    assert pred.source in ("lmm", "database") and abs(pred.lat - 45.76) < 0.1


def test_rag_without_a_database_says_so_and_shows_no_dissimilar_photos(agent_settings, photo):
    settings = agent_settings.model_copy(update={"rag_samples": 1})
    script = [Reply(calls=[("propose_location", {"lat": PARIS[0], "lon": PARIS[1]})]) for _ in range(4)]
    with FakeOpenAI(script) as server:
        load_agent(settings, mode="rag", chat_model=server.chat_model(), tools=_tools(settings, database=False)).invoke(
            {"image": str(photo)}
        )
    five = _user_texts(server.requests[1].body)[0]
    assert "No image database of geotagged photos is configured" in five
    assert "dissimilar photos from" not in five and "-33.9" not in five  # the gallery's far points are not photos
    gallery = _list_after(five, "Candidate coordinates from the GPS gallery")
    assert [PARIS[0], PARIS[1]] in [row[:2] for row in gallery] and len(gallery) == 5


def test_the_agents_first_prompt_carries_the_same_evidence(agent_settings, photo):
    calls: list = []
    with FakeOpenAI([Reply(calls=[("submit_answer", FINAL)])]) as server:
        agent = load_agent(
            agent_settings,
            mode="agent",
            chat_model=server.chat_model(),
            tools=_tools(agent_settings, database=True, calls=calls),
            retry_backoff_s=0.001,
        )
        pred = agent.invoke({"image": str(photo)})
    assert server.violations == [] and pred.source == "lmm"
    assert [kw["dissimilar"] for name, kw in calls if name == "retrieve"] == [10]
    first = "\n".join(_user_texts(server.requests[0].body))
    assert _list_after(first, "Similar photos of the image database") == RERANKED
    assert _list_after(first, "Dissimilar photos of the same database") == _database_rows(FAR)
    assert _list_after(first, "Candidate coordinates from the GPS gallery")[0][:2] == [PARIS[0], PARIS[1]]
    clusters = _list_after(first, "Geographic clusters of the similar database photos")
    assert [c[2] for c in clusters] == [3, 2]  # the Lyon cluster (most members) first, then Rome
    assert f"the real candidate nearest the main cluster's mean): [{LYON[0][0]},{LYON[0][1]}]" in first


def test_rerank_mode_answers_the_real_photo_nearest_the_main_clusters_mean(agent_settings, photo):
    """DualGeo's re-rank as the rerank baseline: the Lyon cluster has the most members (3 against
    Rome's 2 photos of higher similarity); the answer is its real photo nearest the mean, not a
    synthetic centre; with the score weighting it is the weighted centre."""
    pred = load_agent(agent_settings, mode="rerank", tools=_tools(agent_settings, database=True)).invoke({"image": str(photo)})
    assert (pred.lat, pred.lon) == (LYON[0][0], LYON[0][1]) and pred.source == "cluster"
    assert "real candidate nearest the main cluster's mean" in pred.rationale and "3 of 6" in pred.rationale
    weighted = agent_settings.model_copy(update={"cluster_weighting": "score"})
    pred = load_agent(weighted, mode="rerank", tools=_tools(weighted, database=True)).invoke({"image": str(photo)})
    assert (pred.lat, pred.lon) not in [(a, b) for a, b, _ in LYON] and distance_km(pred.lat, pred.lon, 45.75, 4.86) < 10
