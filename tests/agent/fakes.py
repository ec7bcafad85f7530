"""Test doubles: a scripted chat model that fails loudly when its script runs out, and a tool set
of real StructuredTools with the contract's argument names returning canned results."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.tools import BaseTool
from pydantic import BaseModel, Field, PrivateAttr

from retrieval_service.core.types import Candidate, GeoFilter, Location, RetrievalResult, Verification
from retrieval_service.evidence.clustering import Cluster, ClusteringResult
from retrieval_service.evidence.exif import ExifInfo, GpsFix
from retrieval_service.evidence.gazetteer import PlaceMatch
from retrieval_service.evidence.geocoding import GeocodedPlace
from retrieval_service.evidence.ocr import TextLine, TextReading
from retrieval_service.evidence.scene import SceneComposition
from tools import cluster_candidates, read_exif, read_text, retrieve, reverse_geocode, segment_scene, verify_locations
from tools.common import build_tool, photo_of


class ScriptExhausted(AssertionError):
    """The model was called more often than the test scripted."""


class ScriptedChatModel(GenericFakeChatModel):
    """Replies from a fixed script (AIMessage, str or an exception to raise), in order, once each.

    Streamed (as LangGraph's ``messages`` stream mode asks), a reply comes as its words, then one
    chunk with its tool calls and usage, so that streaming keeps both."""

    messages: Any = None
    script: list[Any] = Field(default_factory=list)
    _position: int = PrivateAttr(default=0)
    _received: list[list[BaseMessage]] = PrivateAttr(default_factory=list)
    _bound: list[list[str]] = PrivateAttr(default_factory=list)
    _schemas: list[list[dict[str, Any]]] = PrivateAttr(default_factory=list)
    _offered: list[list[str] | None] = PrivateAttr(default_factory=list)

    @property
    def received(self) -> list[list[BaseMessage]]:
        return self._received

    @property
    def bound(self) -> list[list[str]]:
        return self._bound

    @property
    def offered(self) -> list[list[str] | None]:
        """The tools offered with each request (None: none bound), in request order."""
        return self._offered

    @property
    def schemas(self) -> list[list[dict[str, Any]]]:
        """The OpenAI function schemas of every ``bind_tools`` call (what a real model is sent)."""
        return self._schemas

    @property
    def remaining(self) -> int:
        return len(self.script) - self._position

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        from langchain_core.utils.function_calling import convert_to_openai_tool

        self._bound.append([t.name for t in tools])
        self._schemas.append([convert_to_openai_tool(t) for t in tools])
        return self.bind(offered=[t.name for t in tools])

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        self._received.append(list(messages))
        self._offered.append(kwargs.get("offered"))
        if self._position >= len(self.script):
            raise ScriptExhausted(f"the script has only {len(self.script)} replies; call {self._position + 1} was unexpected")
        item = self.script[self._position]
        self._position += 1
        if isinstance(item, BaseException):
            raise item
        msg = AIMessage(content=item) if isinstance(item, str) else item
        return ChatResult(generations=[ChatGeneration(message=msg)])

    def _stream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> Iterator[ChatGenerationChunk]:
        msg = self._generate(messages, stop=stop, run_manager=run_manager, **kwargs).generations[0].message
        text = msg.content if isinstance(msg.content, str) else ""
        for word in text.split(" ") if text else []:
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=word + " ", id=msg.id))
            if run_manager:
                run_manager.on_llm_new_token(word + " ", chunk=chunk)
            yield chunk
        tail = AIMessageChunk(
            content="",
            id=msg.id,
            usage_metadata=msg.usage_metadata,
            chunk_position="last",
            tool_call_chunks=[
                {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i, "type": "tool_call_chunk"}
                for i, c in enumerate(msg.tool_calls)
            ]
            + [
                {
                    "name": c.get("name"),
                    "args": c.get("args"),
                    "id": c.get("id"),
                    "index": len(msg.tool_calls) + i,
                    "type": "tool_call_chunk",
                }
                for i, c in enumerate(msg.invalid_tool_calls)
            ],
        )
        yield ChatGenerationChunk(message=tail)


def call(name: str, args: dict[str, Any], id: str) -> dict[str, Any]:
    return {"name": name, "args": args, "id": id, "type": "tool_call"}


def submit(answer: dict[str, Any], id: str = "answer", text: str = "", **kw: Any) -> AIMessage:
    """An assistant reply that submits ``answer`` through the submit_answer tool."""
    return AIMessage(text, tool_calls=[call("submit_answer", answer, id)], **kw)


def propose(lat: float, lon: float, id: str = "p") -> AIMessage:
    """A RAG reply proposing (lat, lon) through the propose_location tool."""
    return AIMessage("", tool_calls=[call("propose_location", {"lat": lat, "lon": lon}, id)])


REAL = {  # the real tools' argument schemas and trace summaries: the fakes differ only in what they answer
    "read_exif": (read_exif.ReadExifArgs, read_exif.summarise),
    "retrieve": (retrieve.RetrieveArgs, retrieve.summarise),
    "cluster_candidates": (cluster_candidates.ClusterCandidatesArgs, cluster_candidates.summarise),
    "reverse_geocode": (reverse_geocode.ReverseGeocodeArgs, reverse_geocode.summarise),
    "read_text": (read_text.ReadTextArgs, read_text.summarise),
    "segment_scene": (segment_scene.SegmentSceneArgs, segment_scene.summarise),
    "verify_locations": (verify_locations.VerifyLocationsArgs, verify_locations.summarise),
}


PARIS = (48.8566, 2.3522)
LYON = (45.764, 4.8357)
TOKYO = (35.6762, 139.6503)


def _retrieve(
    image: str,
    k: int | None = None,
    lat: float | None = None,
    lon: float | None = None,
    radius_km: float | None = None,
    country_code: str | None = None,
    dissimilar: int = 0,
    **_: Any,
) -> dict:
    k = k or 10
    if lat is not None:  # a zoomed-in search: finer candidates around the point
        gallery = [
            {"lat": lat + 0.01 * i, "lon": lon + 0.01 * i, "score": 0.5 - 0.01 * i, "country_code": "FR"} for i in range(4)
        ]
        return {"gallery": gallery, "database": [], "dissimilar": [], "filter": {"lat": lat, "lon": lon, "radius_km": radius_km}}
    gallery = [
        {"lat": PARIS[0] + 0.02 * i, "lon": PARIS[1] + 0.02 * i, "score": 0.40 - 0.01 * i, "country_code": "FR"} for i in range(5)
    ] + [
        {"lat": TOKYO[0], "lon": TOKYO[1], "score": 0.41, "country_code": "JP"},
        {"lat": LYON[0], "lon": LYON[1], "score": 0.30, "country_code": "FR"},
    ]
    dis = [{"lat": -33.9 + i, "lon": 18.4 + i, "score": -0.1} for i in range(dissimilar)]
    return {"gallery": gallery[:k], "database": [], "dissimilar": dis, "filter": None}


def _cluster(candidates: list[Any], eps_km: float = 50, min_samples: int = 2, weighting: str | None = None) -> dict:
    """Greedy grouping; ``weighting`` as the real tool: "none" ranks clusters by members, "score" by
    summed score (the default here, as the canned answers were written for it)."""
    from retrieval_service.core.geo import distance_km as haversine_km

    pts = [c.model_dump() if isinstance(c, BaseModel) else c for c in candidates]
    groups: list[list[dict]] = []
    for p in pts:
        for g in groups:
            if haversine_km(p["lat"], p["lon"], g[0]["lat"], g[0]["lon"]) <= eps_km:
                g.append(p)
                break
        else:
            groups.append([p])
    clusters = sorted(
        (
            {
                "lat": sum(p["lat"] for p in g) / len(g),
                "lon": sum(p["lon"] for p in g) / len(g),
                "support": len(g),
                "score_mass": round(sum(p["score"] for p in g), 3),
                "radius_km": 5.0,
            }
            for g in groups
            if len(g) >= min_samples
        ),
        key=(lambda c: (-c["support"], -c["score_mass"])) if weighting == "none" else (lambda c: -c["score_mass"]),
    )
    best = {k: clusters[0][k] for k in ("lat", "lon", "support")} if clusters else None
    return {"clusters": clusters, "best": best, "reranked": [], "noise": sum(len(g) for g in groups if len(g) < min_samples)}


def _geocode(lat: float, lon: float) -> dict:
    from retrieval_service.core.geo import distance_km as haversine_km

    for name, (plat, plon), cc, country in (
        ("Paris", PARIS, "FR", "France"),
        ("Lyon", LYON, "FR", "France"),
        ("Tokyo", TOKYO, "JP", "Japan"),
    ):
        d = haversine_km(lat, lon, plat, plon)
        if d < 300:
            return {
                "city": name,
                "region": None,
                "country": country,
                "country_code": cc,
                "distance_km": round(d, 1),
                "remote": False,
            }
    return {"city": "Nowhere", "region": None, "country": None, "country_code": None, "distance_km": 999.0, "remote": True}


def _verify(image: str, candidates: list[Any]) -> dict:
    from retrieval_service.core.geo import distance_km as haversine_km

    ranked = []
    for c in candidates:
        c = c.model_dump() if isinstance(c, BaseModel) else c
        ranked.append(
            {"lat": c["lat"], "lon": c["lon"], "score": round(0.3 - haversine_km(c["lat"], c["lon"], *PARIS) / 20000, 4)}
        )
    return {"ranked": sorted(ranked, key=lambda r: -r["score"])}


def _artifact(name: str, content: dict) -> Any:
    """The typed result the real tool would return with this content (None for an error)."""
    if not isinstance(content, dict) or "error" in content:
        return None
    if name == "read_exif":
        gps = content.get("gps")
        return ExifInfo(
            gps=GpsFix(lat=gps["lat"], lon=gps["lon"]) if gps else None,
            datetime=content.get("datetime"),
            camera=content.get("camera"),
        )
    if name == "retrieve":

        def cands(rows: list[dict], source: str) -> list[Candidate]:
            return [
                Candidate(
                    lat=r["lat"],
                    lon=r["lon"],
                    score=r.get("score", 0.0),
                    source=source,
                    payload={k: v for k, v in r.items() if k not in ("lat", "lon", "score")} or None,
                )
                for r in rows
            ]

        filt = content.get("filter")
        return RetrievalResult(
            gallery=cands(content.get("gallery") or [], "gallery"),
            database=cands(content.get("database") or [], "database"),
            # database photos carry an id; without a database the retriever's dissimilar are gallery points
            dissimilar=cands(content.get("dissimilar") or [], "database" if content.get("database") else "gallery"),
            geo_filter=GeoFilter(**{k: v for k, v in filt.items() if v is not None}) if filt else None,
        )
    if name == "cluster_candidates":
        best = content.get("best") or {"lat": 0.0, "lon": 0.0, "support": 0}
        return ClusteringResult(
            clusters=[Cluster(members=[], **c) for c in content["clusters"]],
            best=Location(lat=best["lat"], lon=best["lon"]),
            best_support=best["support"],
            reranked=[],
            distance_km=[],
            noise=content.get("noise", 0),
        )
    if name == "reverse_geocode":
        return GeocodedPlace(
            lat=content["_lat"],
            lon=content["_lon"],
            city=content["city"],
            region=content["region"],
            country=content["country"],
            country_code=content["country_code"],
            distance_km=content["distance_km"],
            remote=content["remote"],
            town=Location(lat=content["_lat"], lon=content["_lon"]),
        )
    if name == "read_text":
        return TextReading(
            lines=[TextLine(**ln) for ln in content.get("lines") or []],
            scripts=content.get("scripts") or [],
            places=[
                PlaceMatch(
                    name=p["name"],
                    region="",
                    country_code=p["country_code"],
                    lat=p["lat"],
                    lon=p["lon"],
                    exact=True,
                    words=1,
                    size=1,
                    reliable=p.get("reliable", False),
                    why="the text names its country" if p.get("reliable") else "a single word",
                )
                for p in content.get("places") or []
            ],
        )
    if name == "segment_scene":
        return SceneComposition(**content)
    if name == "verify_locations":
        return Verification(
            ranked=[Candidate(lat=r["lat"], lon=r["lon"], score=r["score"], source="lmm") for r in content["ranked"]]
        )
    return None


def make_fake_tools(
    *, exif_gps: tuple[float, float] | None = None, overrides: dict[str, Callable] | None = None, calls: list | None = None
) -> list[BaseTool]:
    """The seven tools, canned: Paris is right, Tokyo a strong single decoy, Lyon noise. Built like
    the real tools (the real argument schemas, builder and summaries), they answer with content (what
    the LMM reads) and a typed artifact (what the graph keeps). The photo tools read the photo from
    their injected runtime, as the real ones do; the call log shows it as ``image`` (its path)."""
    log = calls if calls is not None else []

    def rec(name: str, fn: Callable) -> Callable:
        def inner(runtime: Any = None, **kwargs: Any) -> tuple[dict, Any]:
            if runtime is not None:
                kwargs["image"] = photo_of(runtime).path
            log.append((name, kwargs))
            content = fn(**kwargs)
            if name == "reverse_geocode" and "error" not in content:  # the artifact knows the queried point
                artifact = _artifact(name, {**content, "_lat": kwargs["lat"], "_lon": kwargs["lon"]})
            else:
                artifact = _artifact(name, content)
            return content, artifact

        return inner

    def exif(image: str) -> dict:
        gps = {"lat": exif_gps[0], "lon": exif_gps[1], "altitude_m": None} if exif_gps else None
        return {"gps": gps, "datetime": None, "camera": None, "note": ""}

    fns: dict[str, Callable] = {
        "read_exif": exif,
        "retrieve": _retrieve,
        "cluster_candidates": _cluster,
        "reverse_geocode": _geocode,
        "read_text": lambda image: {
            "lines": [{"text": "Rue de Rivoli", "confidence": 0.9}],
            "scripts": ["Latin"],
            "places": [{"name": "Paris", "country_code": "FR", "lat": PARIS[0], "lon": PARIS[1], "reliable": True}],
        },
        "segment_scene": lambda image: {
            "shares": {"building": 0.5, "sky": 0.3, "road": 0.2},
            "hints": ["urban street"],
            "backend": "fake",
        },
        "verify_locations": _verify,
    }
    fns.update(overrides or {})
    return [build_tool(name, rec(name, fn), REAL[name][0], f"fake {name}", REAL[name][1]) for name, fn in fns.items()]
