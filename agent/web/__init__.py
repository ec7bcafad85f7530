"""``geoagent serve``'s agent side: the agent's HTTP endpoints (``app.create_app``), their server-sent
events, the chat's conversations (``threads``) and the web chat page (``static/``: plain HTML, JS and CSS;
Leaflet, leaflet.heat, topojson-client, the map drawing code and Natural Earth's countries come from
``agent/assets``; no build step, no CDN)."""
