"""``geoagent serve``'s agent side: the agent's HTTP endpoints (``app.create_app``), their server-sent
events, the chat's conversations (``threads``) and the web chat page (``static/``: plain HTML, JS and CSS;
Leaflet, leaflet.heat and the land basemap come from ``agent/assets``; no build step, no CDN)."""
