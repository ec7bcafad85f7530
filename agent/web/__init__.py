"""``geoagent serve``'s agent side: the agent's HTTP endpoints (``app.create_app``), their server-sent
events, the chat's conversations (``threads``) and the web chat page (``static/``: plain HTML, JS and
CSS with Leaflet, leaflet.heat, topojson-client and a Natural Earth world basemap vendored at pinned
versions with their licences; no build step, no CDN)."""
