/* geoagent map: draws predictions on a Leaflet map that works offline.
 * Needs Leaflet 1.9.4 and leaflet.heat 0.2.0 (vendored next to this file) and the bundled land
 * polygons. Usage: geoagentMap("map", {land: <GeoJSON>, tiles: <tile URL template> | null, predictions: [...]})
 * where each prediction is the object agent/mapview.py map_data() builds. MIT, part of geoagent. */
(function () {
  "use strict";
  var COLOURS = {gallery: "#3388ff", database: "#7b3294", lmm: "#e66101", ocr: "#1a9641", exif: "#d7191c", cluster: "#555555"};

  function esc(text) {
    return String(text == null ? "" : text).replace(/[&<>"']/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c];
    });
  }

  function drawPrediction(map, p, bounds) {
    var group = L.featureGroup();
    if (p.surface && p.surface.heat && p.surface.heat.length && L.heatLayer) {
      L.heatLayer(p.surface.heat, {radius: 18, blur: 14, maxZoom: 6, minOpacity: 0.25, pane: "heat"}).addTo(group);
    }
    if (p.surface && p.surface.regions) {
      [["90", {color: "#f4a582", weight: 1, fillOpacity: 0.10, dashArray: "4 4"}],
       ["50", {color: "#ca0020", weight: 2, fillOpacity: 0.15}]].forEach(function (level) {
        var rings = p.surface.regions[level[0]] || [];
        rings.forEach(function (ring) {
          L.polygon(ring, level[1]).bindTooltip(level[0] + "% search area" +
            (p.search_area_km2 && p.search_area_km2[level[0]] ? " (" + Math.round(p.search_area_km2[level[0]]).toLocaleString() + " km²)" : ""))
            .addTo(group);
        });
      });
    }
    (p.clusters || []).forEach(function (c, i) {
      L.circle([c.lat, c.lon], {radius: Math.max(1000, c.radius_km * 1000), color: "#555555", weight: 1, fillOpacity: 0.15})
        .bindTooltip("cluster " + (i + 1) + ": " + c.support + " candidates").addTo(group);
    });
    (p.candidates || []).forEach(function (c) {
      L.circleMarker([c.lat, c.lon], {radius: 5, color: "#ffffff", weight: 1, fillColor: COLOURS[c.source] || "#3388ff", fillOpacity: 0.9})
        .bindTooltip(esc(c.source) + " candidate " + c.lat.toFixed(4) + ", " + c.lon.toFixed(4) + " (score " + c.score.toFixed(3) + ")")
        .addTo(group);
      bounds.push([c.lat, c.lon]);
    });
    (p.alternatives || []).forEach(function (a) {
      L.circleMarker([a.lat, a.lon], {radius: 8, color: "#333333", weight: 2, fillColor: "#bbbbbb", fillOpacity: 0.9})
        .bindTooltip("alternative " + a.lat.toFixed(4) + ", " + a.lon.toFixed(4)).addTo(group);
    });
    var popup = "<b>" + esc(p.name) + "</b><br>" + p.lat.toFixed(5) + ", " + p.lon.toFixed(5) + "<br>" + esc(p.place) +
      "<br>confidence " + p.confidence.toFixed(2) + " (" + esc(p.source) + ")<br><small>" + esc(p.rationale) + "</small>";
    L.circleMarker([p.lat, p.lon], {radius: 11, color: "#ffffff", weight: 3, fillColor: "#e31a1c", fillOpacity: 1, pane: "answer"})
      .bindPopup(popup, {maxWidth: 400}).bindTooltip("answer for " + esc(p.name)).addTo(group);
    bounds.push([p.lat, p.lon]);
    return group;
  }

  window.geoagentMap = function (elementId, data) {
    var map = L.map(elementId, {worldCopyJump: true, preferCanvas: false});
    map.createPane("land").style.zIndex = 150;    /* under the online tiles (200) */
    map.createPane("heat").style.zIndex = 350;
    map.createPane("answer").style.zIndex = 650;
    var land = L.geoJSON(data.land, {pane: "land", interactive: false,
      style: {color: "#b8b09a", weight: 0.6, fillColor: "#ece6d4", fillOpacity: 1}}).addTo(map);
    var bases = {"offline land (bundled)": L.layerGroup()}, overlays = {"land outline": land};
    if (data.tiles) {  /* online tiles on top when reachable; offline they fail and the land shows */
      var osm = L.tileLayer(data.tiles, {maxZoom: 19,
        attribution: "&copy; OpenStreetMap contributors"});
      osm.addTo(map);
      bases = {"OpenStreetMap (online)": osm, "offline land only": L.layerGroup()};
    } else {
      bases["offline land (bundled)"].addTo(map);
    }
    var bounds = [];
    (data.predictions || []).forEach(function (p) {
      var group = drawPrediction(map, p, bounds).addTo(map);
      overlays[esc(p.name)] = group;
    });
    L.control.layers(bases, overlays, {collapsed: true}).addTo(map);
    L.control.scale().addTo(map);
    if (bounds.length) { map.fitBounds(bounds, {padding: [30, 30], maxZoom: 8}); } else { map.setView([20, 0], 2); }
    map.attributionControl.addAttribution("land: global-land-mask / NOAA GLOBE");
    return map;
  };
})();
