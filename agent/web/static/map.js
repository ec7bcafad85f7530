// The chat's map: the bundled land basemap (agent/assets/world/land.geojson, no tiles, no network),
// then per answer: candidates, clusters, the answer, the probability heatmap and the search area.
"use strict";
window.GeoMap = (function () {
  const COLORS = { gallery: "#3b6fd8", database: "#7b3fb8", lmm: "#d8823b", exif: "#2a7d4f", ocr: "#b8a13f", cluster: "#555" };
  let map, overlay, control;

  function init(el) {
    map = L.map(el, { worldCopyJump: true, minZoom: 1, maxZoom: 12 }).setView([20, 0], 2);
    map.attributionControl.addAttribution("land: global-land-mask / NOAA GLOBE");
    fetch("/assets/world/land.geojson").then(r => r.json()).then(land => {
      L.geoJSON(land, { interactive: false, style: { color: "#b8b09a", weight: 0.6, fillColor: "#ece6d4", fillOpacity: 1, className: "land" } })
        .addTo(map).bringToBack();
    }).catch(err => console.warn("basemap unavailable", err));
    const legend = L.control({ position: "bottomleft" });
    legend.onAdd = () => {
      const d = L.DomUtil.create("div", "legend");
      d.innerHTML = Object.entries(COLORS).map(([k, c]) => `<i style="background:${c}"></i>${k}`).join("<br>");
      return d;
    };
    legend.addTo(map);
    return map;
  }

  function show(pred) {
    if (overlay) { overlay.remove(); }
    if (control) { control.remove(); }
    overlay = L.layerGroup().addTo(map);
    const layers = {};
    const group = (name) => (layers[name] = L.layerGroup().addTo(overlay));
    const surface = pred.surface || {};
    if (surface.heat && surface.heat.length && L.heatLayer) {
      layers["probability heatmap"] = L.heatLayer(surface.heat, { radius: 18, blur: 14, maxZoom: 6 }).addTo(overlay);
    }
    const area = group("search area");
    for (const [level, rings] of Object.entries(surface.regions || {})) {
      const km2 = (pred.search_area_km2 || {})[level];
      for (const ring of rings) {
        L.polygon(ring, { color: level === "50" ? "#c0392b" : "#e67e22", weight: 1.5, fillOpacity: 0.08, className: "search-area" })
          .bindTooltip(`${level}% region` + (km2 ? `: ${Math.round(km2).toLocaleString()} km²` : "")).addTo(area);
      }
    }
    const clusters = group("clusters");
    for (const c of pred.clusters || []) {
      L.circle([c.lat, c.lon], { radius: Math.max(c.radius_km, 5) * 1000, color: "#555", weight: 1, fillOpacity: 0.05, className: "cluster" })
        .bindTooltip(`cluster: ${c.support} candidates`).addTo(clusters);
    }
    const cands = group("candidates");
    for (const c of pred.candidates || []) {
      L.circleMarker([c.lat, c.lon], { radius: 4, color: COLORS[c.source] || "#333", weight: 1, fillOpacity: 0.7, className: "candidate" })
        .bindTooltip(`${c.source} ${c.lat.toFixed(3)}, ${c.lon.toFixed(3)} (score ${c.score.toFixed(3)})`).addTo(cands);
    }
    const answer = group("answer");
    L.marker([pred.lat, pred.lon], { title: "answer", alt: "answer" })
      .bindPopup(`<b>answer</b><br>${pred.lat.toFixed(5)}, ${pred.lon.toFixed(5)}`).addTo(answer);
    control = L.control.layers(null, layers, { collapsed: true }).addTo(map);
    map.setView([pred.lat, pred.lon], 4);
  }

  function clear() {
    if (overlay) { overlay.remove(); overlay = null; }
    if (control) { control.remove(); control = null; }
  }

  return { init, show, clear, get map() { return map; } };
})();
