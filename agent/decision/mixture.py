"""One probability model over the Earth: a von Mises-Fisher mixture on the sphere.

Every source of evidence becomes a distribution, never a raw score pooled with another scale
(``agent.decision.sources`` turns candidates into components); the mixture of them gives

* the answer: the point with the most probability within the confidence radius (``best_point``),
  among the modes (found by mean shift from every component centre) and the component centres;
* the clusters: the modes, ordered by the probability mass that flows to each;
* P(error <= t km) for t in ``THRESHOLDS_KM``, for any reported point;
* the search areas: the area (km2) of the smallest region holding 50% / 90% of the mass;
* the probability surface (heat samples and the 50% / 90% region outlines) for maps.

A component with spread s km is a vMF kernel with concentration ``kappa = (R / s)**2`` (s is the
1-sigma spread along each axis for small s); ``kappa = 0`` is the uniform distribution over the
sphere (mass no source placed anywhere in particular). Probabilities and areas are Monte Carlo
estimates from ``N_SAMPLES`` samples drawn with a fixed seed (so a photo always gets the same
numbers): P(error <= t) is the share of samples within t km of the point; the area of the
highest-density region holding p is E[1{f(X) >= f_p} / f(X)] over the samples X ~ f.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from agent.decision.blas import single_blas_thread
from agent.prediction import AREA_LEVELS, THRESHOLDS_KM
from retrieval_service.core.geo import EARTH_RADIUS_KM, to_unit_vectors

N_SAMPLES = 4096
SEED = 20231
MODE_MERGE_KM = 5.0
"""Mean-shift end points closer than this are one mode."""
MEAN_SHIFT_STEPS = 30
MAX_HEAT_POINTS = 400
DENSITY_CHUNK = 4096
FLOAT32_EXP_FLOOR = -87.0
"""exp(-87) ~ 1.6e-38 is float32's smallest normal magnitude: lower kernel arguments are clamped to it."""
FLOAT64_EXP_FLOOR = -700.0
EARTH_AREA_KM2 = 4 * math.pi * EARTH_RADIUS_KM**2


@dataclass(frozen=True)
class Component:
    """One kernel: centre, weight (any positive scale; the mixture normalises), spread in km
    (None: uniform over the Earth), where it came from, and a label for the rationale."""

    lat: float
    lon: float
    weight: float
    spread_km: float | None
    source: str
    label: str = ""


@dataclass
class Mode:
    """A mode of the mixture: where, the density there, the mass that flows to it, its members."""

    lat: float
    lon: float
    density: float
    mass: float
    members: list[int] = field(default_factory=list)


def kappa(spread_km: float | None) -> float:
    return 0.0 if spread_km is None else (EARTH_RADIUS_KM / max(spread_km, 1e-3)) ** 2


def _log_norm(k: np.ndarray) -> np.ndarray:
    """log of the vMF normaliser on S2 written for exp(k (mu.x - 1)): k / (2 pi (1 - e^-2k)); 1/(4 pi) at k=0."""
    k = np.asarray(k, float)
    safe = np.maximum(k, 1e-12)
    out = np.log(safe) - np.log(2 * np.pi) - np.log(-np.expm1(-2 * safe))
    return np.where(k < 1e-9, -np.log(4 * np.pi), out)


class Mixture:
    """A normalised vMF mixture (density per steradian)."""

    def __init__(self, components: list[Component]) -> None:
        kept = [c for c in components if c.weight > 0 and math.isfinite(c.weight)]
        if not kept:
            raise ValueError("a mixture needs at least one component with positive weight")
        self.components = kept
        w = np.array([c.weight for c in kept], float)
        self.weights = w / w.sum()
        self.mu = to_unit_vectors([c.lat for c in kept], [c.lon for c in kept]).astype(float)
        self.kappa = np.array([kappa(c.spread_km) for c in kept], float)
        self._log_c = _log_norm(self.kappa)
        self._samples: np.ndarray | None = None
        self._sample_density: np.ndarray | None = None
        self._sample_component: np.ndarray | None = None
        self._modes: list[Mode] | None = None
        self._scaled: tuple[np.ndarray, ...] | None = None
        self._thresholds: dict[float, float] = {}

    def __len__(self) -> int:
        return len(self.components)

    # ------------------------------------------------------------------ density
    def _kernel(self, x: np.ndarray) -> np.ndarray:
        """(n, m) kernel values of the m components at n unit vectors."""
        one_minus_cos = np.maximum(0.0, 1.0 - x @ self.mu.T)
        return np.exp(self._log_c[None, :] - self.kappa[None, :] * one_minus_cos)

    @single_blas_thread
    def density_xyz(self, x: np.ndarray) -> np.ndarray:
        """The density at many points. The exponent log c - kappa (1 - mu.x) is formed in float64 as
        (kappa mu).x + (log c - kappa), one matrix product (kappa reaches 1.6e10 for EXIF's 50 m:
        float32's 1 - mu.x would be off by thousands); the kernel values and their sum in float32."""
        if self._scaled is None:
            self._scaled = (self.mu * self.kappa[:, None], self._log_c - self.kappa, self.weights.astype(np.float32))
        kmu, offset, w32 = self._scaled
        out = np.zeros(len(x))
        for start in range(0, len(x), DENSITY_CHUNK):
            arg = np.asarray(x[start : start + DENSITY_CHUNK], dtype=float) @ kmu.T
            arg += offset
            k32 = arg.astype(np.float32)
            # kernel values below e^-87 are dropped (float32 denormals make exp and the product 10x slower)
            np.maximum(k32, np.float32(FLOAT32_EXP_FLOOR), out=k32)
            np.exp(k32, out=k32)
            out[start : start + DENSITY_CHUNK] = k32 @ w32
        return out

    def density(self, lats, lons) -> np.ndarray:
        """Probability per steradian at the points (divide by R**2 for per km2)."""
        return self.density_xyz(to_unit_vectors(np.atleast_1d(lats), np.atleast_1d(lons)).astype(float))

    # ------------------------------------------------------------------ samples
    @single_blas_thread
    def samples(self) -> tuple[np.ndarray, np.ndarray]:
        """``N_SAMPLES`` unit vectors drawn from the mixture (fixed seed) and the density at each."""
        if self._samples is None:
            rng = np.random.default_rng(SEED)
            comp = rng.choice(len(self.weights), size=N_SAMPLES, p=self.weights)
            k = self.kappa[comp]
            u = rng.random(N_SAMPLES)
            # cos(angle to the mean) of a vMF sample on S2 (exact inverse CDF); uniform when k = 0
            safe = np.maximum(k, 1e-12)
            w = np.where(k < 1e-9, 2 * u - 1, 1 + np.log(u + (1 - u) * np.exp(-2 * safe)) / safe)
            w = np.clip(w, -1.0, 1.0)
            phi = rng.random(N_SAMPLES) * 2 * np.pi
            mu = self.mu[comp]
            # an orthonormal frame around each mean
            helper = np.where(np.abs(mu[:, [0]]) < 0.9, np.array([[1.0, 0, 0]]), np.array([[0, 1.0, 0]]))
            e1 = np.cross(mu, helper)
            e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
            e2 = np.cross(mu, e1)
            s = np.sqrt(np.maximum(0.0, 1 - w**2))[:, None]
            x = w[:, None] * mu + s * (np.cos(phi)[:, None] * e1 + np.sin(phi)[:, None] * e2)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            self._samples, self._sample_density, self._sample_component = x, self.density_xyz(x), comp
        return self._samples, self._sample_density  # type: ignore[return-value]

    @single_blas_thread
    def prob_within(self, lat: float, lon: float, radii_km) -> np.ndarray:
        """P(distance(X, point) <= r) for each radius."""
        x, _ = self.samples()
        p = to_unit_vectors([lat], [lon])[0].astype(float)
        dist = np.arccos(np.clip(x @ p, -1.0, 1.0)) * EARTH_RADIUS_KM
        return np.array([float((dist <= r).mean()) for r in np.atleast_1d(radii_km)])

    @single_blas_thread
    def mass_within(self, lats, lons, radius_km: float) -> np.ndarray:
        """P(distance(X, point) <= radius) for many points at once (the same samples as ``prob_within``)."""
        x, _ = self.samples()
        pts = to_unit_vectors(np.atleast_1d(lats), np.atleast_1d(lons)).astype(float)
        return ((x @ pts.T) >= math.cos(radius_km / EARTH_RADIUS_KM)).mean(axis=0)

    def best_point(self, radius_km: float) -> tuple[float, float, float]:
        """The point with the most probability within ``radius_km`` (lat, lon, that probability),
        among the modes and the component centres: a narrow component wins only when it carries
        the mass, not because its peak is the tallest. Ties go to the denser point."""
        local = [c for c in self.components if c.spread_km is not None]
        lats = [md.lat for md in self.modes()] + [c.lat for c in local]
        lons = [md.lon for md in self.modes()] + [c.lon for c in local]
        mass = self.mass_within(lats, lons, radius_km)
        dens = self.density(lats, lons)
        best = max(range(len(lats)), key=lambda i: (round(float(mass[i]), 9), float(dens[i])))
        return float(lats[best]), float(lons[best]), float(mass[best])

    def source_shares(self, lat: float, lon: float, radius_km: float) -> dict[str, float]:
        """Of the probability within ``radius_km`` of a point, the share each source put there
        (which evidence decided), largest first; empty when no sample falls there."""
        x, _ = self.samples()
        assert self._sample_component is not None
        p = to_unit_vectors([lat], [lon])[0].astype(float)
        inside = self._sample_component[(x @ p) >= math.cos(radius_km / EARTH_RADIUS_KM)]
        if not len(inside):
            return {}
        counts: dict[str, int] = {}
        for comp in inside.tolist():
            source = self.components[comp].source
            counts[source] = counts.get(source, 0) + 1
        return {k: v / len(inside) for k, v in sorted(counts.items(), key=lambda kv: -kv[1])}

    def probabilities(self, lat: float, lon: float) -> dict[str, float]:
        """P(error <= t km) of answering (lat, lon), keyed like ``Prediction.probabilities``."""
        probs = self.prob_within(lat, lon, THRESHOLDS_KM)
        probs = np.maximum.accumulate(probs)  # monotone in t by construction; kept explicit
        return {str(t): round(float(p), 4) for t, p in zip(THRESHOLDS_KM, probs, strict=False)}

    def density_threshold(self, level: float) -> float:
        """The density f_p whose superlevel set {f >= f_p} holds ``level`` of the mass."""
        if level not in self._thresholds:
            _, dens = self.samples()
            self._thresholds[level] = float(np.quantile(dens, 1.0 - level))
        return self._thresholds[level]

    def search_areas(self) -> dict[str, float]:
        """Areas (km2) of the smallest regions holding 50% and 90% of the mass (``AREA_LEVELS``)."""
        _, dens = self.samples()
        out: dict[str, float] = {}
        for level in AREA_LEVELS:
            tau = self.density_threshold(level / 100)
            inside = dens >= tau
            steradians = float(np.mean(np.where(inside, 1.0 / np.maximum(dens, 1e-300), 0.0)))
            out[str(level)] = round(min(EARTH_AREA_KM2, steradians * EARTH_RADIUS_KM**2), 1)
        return out

    # ------------------------------------------------------------------ modes
    def modes(self) -> list[Mode]:
        """The mixture's modes by mean shift from every component centre, heaviest first; a mode's
        mass is the weight of the components whose centres climb to it."""
        if self._modes is None:
            self._modes = self._find_modes()
        return list(self._modes)

    @single_blas_thread
    def _find_modes(self) -> list[Mode]:
        local = self.kappa > 0
        if not local.any():
            return [
                Mode(
                    lat=float(self.components[0].lat),
                    lon=float(self.components[0].lon),
                    density=1 / (4 * math.pi),
                    mass=1.0,
                    members=list(range(len(self.components))),
                )
            ]
        x = self.mu[local].copy()
        mu, log_c, kap = self.mu[local], self._log_c[local], self.kappa[local]
        pull = self.weights[local] * kap
        active = np.arange(len(x))
        for _ in range(MEAN_SHIFT_STEPS):  # x <- normalise(sum_i w_i kappa_i f_i(x) mu_i), converged points stop
            cur = x[active]
            arg = log_c[None, :] - kap[None, :] * np.maximum(0.0, 1.0 - cur @ mu.T)
            k = np.exp(np.maximum(arg, FLOAT64_EXP_FLOOR, out=arg)) * pull[None, :]  # no denormals (slow)
            nxt = k @ mu
            norm = np.linalg.norm(nxt, axis=1, keepdims=True)
            nxt = np.where(norm > 0, nxt / np.maximum(norm, 1e-300), cur)
            moved = np.arccos(np.clip(np.sum(nxt * cur, axis=1), -1, 1)) * EARTH_RADIUS_KM
            x[active] = nxt
            active = active[moved >= 0.01]
            if not len(active):
                break
        merge_cos = math.cos(MODE_MERGE_KM / EARTH_RADIUS_KM)
        ids = np.flatnonzero(local)
        close = x @ x.T >= merge_cos
        left = np.ones(len(ids), bool)
        heads: list[int] = []
        members: list[np.ndarray] = []
        for i in range(len(ids)):  # greedy: each unassigned end point takes all ends near it
            if not left[i]:
                continue
            near = left & close[i]
            left &= ~near
            heads.append(i)
            members.append(ids[near])
        ends = x[heads]
        dens = self.density_xyz(ends)
        lats = np.degrees(np.arcsin(np.clip(ends[:, 2], -1.0, 1.0)))
        lons = np.degrees(np.arctan2(ends[:, 1], ends[:, 0]))
        out = [
            Mode(lat=float(lat), lon=float(lon), density=float(d), mass=float(self.weights[mem].sum()), members=mem.tolist())
            for lat, lon, d, mem in zip(lats, lons, dens, members, strict=False)
        ]
        out.sort(key=lambda md: (-md.mass, -md.density))
        return out

    def mode(self) -> Mode:
        """The answer: the highest-density mode (the most probable place)."""
        return max(self.modes(), key=lambda md: md.density)

    # ------------------------------------------------------------------ surface
    def heat(self, max_points: int = MAX_HEAT_POINTS) -> list[tuple[float, float, float]]:
        """(lat, lon, density / max density) at the densest samples and the modes, for a heatmap."""
        x, dens = self.samples()
        order = np.argsort(-dens)[:max_points]
        top = float(dens[order[0]]) if len(order) else 1.0
        pts = x[order]
        lats = np.degrees(np.arcsin(np.clip(pts[:, 2], -1, 1)))
        lons = np.degrees(np.arctan2(pts[:, 1], pts[:, 0]))
        rel = dens[order] / top
        return list(zip(np.round(lats, 5).tolist(), np.round(lons, 5).tolist(), np.round(rel, 4).tolist(), strict=False))
