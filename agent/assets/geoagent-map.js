/* geoagent map: draws predictions on a Leaflet map that works offline. MIT, part of geoagent.
 * Needs Leaflet 1.9.4, leaflet.heat 0.2.0 and topojson-client 3.1.0 (vendored next to this file).
 *
 *   var m = geoagentMap("map", {countries: <TopoJSON> | null, countriesUrl: <url> | null,
 *                               tiles: <tile URL template> | null, predictions: [...], panel: true});
 *   m.show(prediction)   // draw one prediction instead (the web chat)
 *   m.clear()
 *
 * A prediction is a Prediction's JSON (agent/prediction.py) or the trimmed copy agent/mapview.py
 * map_data() makes: lat, lon, confidence, source, place {city, region, country}, probabilities,
 * search_area_km2, surface {heat, regions {"50"|"90": [{outline, holes, area_km2, mass}]}},
 * candidates, alternatives, clusters, rationale, image.
 *
 * The basemap is Natural Earth's countries at 1:50m (public domain): land, coastlines and borders.
 * The answer is a black-and-white target, unlike any heat colour; a legend says what each mark is. */
(function () {
  "use strict";
  var COLOURS = {gallery: "#2c7bb6", database: "#7b3294", lmm: "#018571", ocr: "#1a9641", exif: "#8c510a", cluster: "#555555"};
  var RAMP = [[0.25, "#ffffb2"], [0.5, "#fecc5c"], [0.75, "#fd8d3c"], [1.0, "#e31a1c"]];  /* ColorBrewer YlOrRd */
  var HEAT = {};
  RAMP.forEach(function (stop) { HEAT[stop[0]] = stop[1]; });
  var REGIONS = {
    "50": {color: "#3f007d", weight: 2, fillColor: "#54278f", fillOpacity: 0.10},
    "90": {color: "#6a51a3", weight: 1.5, dashArray: "5 4", fillColor: "#9e9ac8", fillOpacity: 0.06}
  };
  var TARGET = '<svg xmlns="http://www.w3.org/2000/svg" width="30" height="30" viewBox="0 0 30 30">' +
    '<circle cx="15" cy="15" r="13" fill="#ffffff" stroke="#000000" stroke-width="3"/>' +
    '<circle cx="15" cy="15" r="7.5" fill="#000000"/><circle cx="15" cy="15" r="2.5" fill="#ffffff"/></svg>';
  var MIN_SPAN_DEG = 8;  /* an answer with a tiny search area (EXIF GPS) is shown in its country, its place labelled */

  function esc(text) {
    return String(text == null ? "" : text).replace(/[&<>"']/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c];
    });
  }
  function km2(v) { return v >= 10 ? Math.round(v).toLocaleString("en-US") + " km²" : (v > 0 ? v.toPrecision(2) + " km²" : "under 0.1 km²"); }
  function pct(v) { return (100 * v).toFixed(v < 0.995 ? 0 : 1) + "%"; }
  function placeOf(p) {
    var place = p.place;
    if (place && typeof place === "object") { place = [place.city, place.region, place.country].filter(Boolean).join(", "); }
    return place || "an unnamed place";
  }
  function nameOf(p) { return p.name || String(p.image || "").split(/[\\/]/).pop() || "photo"; }
  function latlng(ring) { return ring.map(function (q) { return [q[0], q[1]]; }); }

  function answerText(p) {
    var probs = p.probabilities || {}, areas = p.search_area_km2 || {};
    var sure = probs["25"] != null ? "P(within 25 km) " + pct(probs["25"]) : "confidence " + Number(p.confidence).toFixed(2);
    var lines = ["<b>" + esc(placeOf(p)) + "</b>", p.lat.toFixed(5) + ", " + p.lon.toFixed(5),
                 esc(sure) + " · source " + esc(p.source)];
    var keys = Object.keys(areas);
    if (keys.length) { lines.push("search area " + keys.map(function (k) { return k + "%: " + km2(areas[k]); }).join(" · ")); }
    return lines.join("<br>");
  }

  function drawPrediction(p, bounds) {
    var layers = {heat: L.layerGroup(), regions: L.layerGroup(), clusters: L.layerGroup(), candidates: L.layerGroup(), answer: L.layerGroup()};
    var surface = p.surface || {};
    if (surface.heat && surface.heat.length && L.heatLayer) {
      L.heatLayer(surface.heat, {radius: 18, blur: 14, maxZoom: 6, minOpacity: 0.25, gradient: HEAT, pane: "heat"}).addTo(layers.heat);
    }
    ["90", "50"].forEach(function (level) {
      (((surface.regions || {})[level]) || []).forEach(function (piece, i) {
        var outline = piece.outline || piece;  /* bare rings: predictions saved before regions had areas */
        if (!outline.length) { return; }  /* the whole Earth */
        var rings = [latlng(outline)].concat((piece.holes || []).map(latlng));
        var tip = level + "% search area" + (piece.mass != null ? ", piece " + (i + 1) + ": " + km2(piece.area_km2 || 0) +
          ", " + pct(piece.mass) + " of the probability" : "");
        L.polygon(rings, Object.assign({className: "search-area search-area-" + level}, REGIONS[level])).bindTooltip(tip).addTo(layers.regions);
        if (level === "90") { rings[0].forEach(function (q) { bounds.push(q); }); }
      });
    });
    (p.clusters || []).forEach(function (c, i) {
      L.circle([c.lat, c.lon], {radius: Math.max(5, c.radius_km || 0) * 1000, color: COLOURS.cluster, weight: 1, fillOpacity: 0.05, className: "cluster"})
        .bindTooltip("cluster " + (i + 1) + ": " + c.support + " candidates").addTo(layers.clusters);
    });
    (p.candidates || []).forEach(function (c) {
      L.circleMarker([c.lat, c.lon], {radius: 4, color: "#ffffff", weight: 1, fillColor: COLOURS[c.source] || "#2c7bb6", fillOpacity: 0.9, className: "candidate"})
        .bindTooltip(esc(c.source) + " candidate " + c.lat.toFixed(4) + ", " + c.lon.toFixed(4) + " (score " + Number(c.score).toFixed(3) + ")")
        .addTo(layers.candidates);
    });
    (p.alternatives || []).forEach(function (a, i) {
      var where = a.place ? [a.place.city, a.place.region, a.place.country].filter(Boolean).join(", ") : "";
      L.circleMarker([a.lat, a.lon], {radius: 7, color: "#000000", weight: 2, fillColor: "#bdbdbd", fillOpacity: 0.95, className: "alternative"})
        .bindTooltip("alternative " + (i + 1) + (where ? ": " + esc(where) : "") + " " + a.lat.toFixed(4) + ", " + a.lon.toFixed(4) +
          (a.probability != null ? " (" + pct(a.probability) + " of the probability)" : "")).addTo(layers.answer);
      bounds.push([a.lat, a.lon]);
    });
    var icon = L.divIcon({className: "answer-marker", html: TARGET, iconSize: [30, 30], iconAnchor: [15, 15], popupAnchor: [0, -14]});
    L.marker([p.lat, p.lon], {icon: icon, title: "answer", alt: "answer", pane: "answer", zIndexOffset: 1000})
      .bindPopup(answerText(p) + (p.rationale ? "<br><small>" + esc(p.rationale) + "</small>" : ""), {maxWidth: 360})
      .bindTooltip(esc(placeOf(p)), {permanent: true, direction: "right", offset: [16, 0], className: "answer-label"})
      .addTo(layers.answer);
    bounds.push([p.lat - MIN_SPAN_DEG / 2, p.lon - MIN_SPAN_DEG / 2], [p.lat + MIN_SPAN_DEG / 2, p.lon + MIN_SPAN_DEG / 2]);
    return layers;
  }

  function legend() {
    var box = L.control({position: "bottomleft"});
    box.onAdd = function (map) {
      var d = L.DomUtil.create("div", "geoagent-legend");
      var open = map.getSize().x >= 520;  /* on a narrow map the legend starts folded */
      var swatch = function (colour) { return '<i class="dot" style="background:' + colour + '"></i>'; };
      var stops = RAMP.map(function (stop) { return stop[1] + " " + (100 * stop[0]) + "%"; }).join(",");
      d.innerHTML = "<details" + (open ? " open" : "") + "><summary>legend</summary>" +
        '<span class="target">' + TARGET + "</span> answer<br>" +
        '<i class="dot" style="background:#bdbdbd;border:2px solid #000"></i> alternative<br>' +
        ["gallery", "database", "lmm", "ocr"].map(function (k) { return swatch(COLOURS[k]) + k + " candidate"; }).join("<br>") + "<br>" +
        '<i class="line" style="border-top:2px solid ' + REGIONS["50"].color + '"></i> 50% search area<br>' +
        '<i class="line" style="border-top:2px dashed ' + REGIONS["90"].color + '"></i> 90% search area<br>' +
        '<i class="ramp" style="background:linear-gradient(to right,' + stops + ')"></i> probability density</details>';
      L.DomEvent.disableClickPropagation(d);
      return d;
    };
    return box;
  }

  function panel(predictions, map, fits) {
    var box = L.control({position: "topright"});
    box.onAdd = function () {
      var d = L.DomUtil.create("div", "geoagent-panel");
      d.innerHTML = predictions.map(function (p, i) {
        return '<div class="entry" data-i="' + i + '"><div class="photo">' + esc(nameOf(p)) + "</div>" + answerText(p) + "</div>";
      }).join("");
      Array.prototype.forEach.call(d.querySelectorAll(".entry"), function (el) {
        el.addEventListener("click", function () { map.fitBounds(fits[+el.dataset.i], {padding: [30, 30], maxZoom: 9}); });
      });
      L.DomEvent.disableClickPropagation(d);
      L.DomEvent.disableScrollPropagation(d);
      return d;
    };
    return box;
  }

  function basemap(map, topology) {
    if (!topology || !window.topojson) { return; }
    var countries = topology.objects.countries;
    L.geoJSON(topojson.feature(topology, countries), {pane: "land", interactive: false,
      style: {stroke: false, fillColor: "#f2efe6", fillOpacity: 1, className: "land"}}).addTo(map);
    L.geoJSON(topojson.mesh(topology, countries, function (a, b) { return a !== b; }), {pane: "land", interactive: false,
      style: {color: "#9a9a9a", weight: 0.8, dashArray: "3 2", fill: false, className: "border"}}).addTo(map);
    L.geoJSON(topojson.mesh(topology, countries, function (a, b) { return a === b; }), {pane: "land", interactive: false,
      style: {color: "#6b8fa3", weight: 1, fill: false, className: "coast"}}).addTo(map);
  }

  window.geoagentMap = function (elementId, data) {
    data = data || {};
    var map = L.map(elementId, {worldCopyJump: true, minZoom: 1});
    map.getContainer().style.background = "#c6dbef";  /* the sea */
    map.createPane("land").style.zIndex = 150;    /* under the online tiles (200) */
    map.createPane("heat").style.zIndex = 350;
    map.createPane("answer").style.zIndex = 650;
    if (data.countries) { basemap(map, data.countries); }
    else if (data.countriesUrl) {
      fetch(data.countriesUrl).then(function (r) { return r.json(); }).then(function (t) { basemap(map, t); })
        .catch(function (err) { if (window.console) { console.warn("basemap unavailable", err); } });
    }
    if (data.tiles) {  /* online tiles on top when reachable; offline they fail and the bundled map shows */
      L.tileLayer(data.tiles, {maxZoom: 19, attribution: "&copy; OpenStreetMap contributors"}).addTo(map);
    }
    map.attributionControl.addAttribution("countries: Natural Earth (public domain)");
    L.control.scale().addTo(map);
    legend().addTo(map);
    var drawn = [], switcher = null, info = null;

    function clear() {
      drawn.forEach(function (layer) { layer.remove(); });
      drawn = [];
      if (switcher) { switcher.remove(); switcher = null; }
      if (info) { info.remove(); info = null; }
    }
    function draw(predictions, withPanel) {
      clear();
      var overlays = {}, all = [], fits = [];
      predictions.forEach(function (p) {
        var bounds = [];
        var layers = drawPrediction(p, bounds);
        var prefix = predictions.length > 1 ? esc(nameOf(p)) + ": " : "";
        [["answer", "answer and alternatives"], ["regions", "search areas (50%, 90%)"], ["heat", "probability heatmap"],
         ["clusters", "clusters"], ["candidates", "candidates"]].forEach(function (pair) {
          layers[pair[0]].addTo(map);
          drawn.push(layers[pair[0]]);
          overlays[prefix + pair[1]] = layers[pair[0]];
        });
        fits.push(bounds);
        all = all.concat(bounds);
      });
      switcher = L.control.layers(null, overlays, {collapsed: true}).addTo(map);
      if (withPanel && predictions.length) { info = panel(predictions, map, fits).addTo(map); }
      if (all.length) { map.fitBounds(all, {padding: [30, 30], maxZoom: 9}); } else { map.setView([20, 0], 2); }
    }
    draw(data.predictions || [], data.panel !== false);
    if (!(data.predictions || []).length) { map.setView([20, 0], 2); }
    return {map: map, clear: clear, show: function (p) { draw([p], false); }};
  };
})();
