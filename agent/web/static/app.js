// The chat page: send a photo (drop, paste, pick or URL) to /v1/locate/stream, show the steps live,
// then the answer on the map (agent/assets/geoagent-map.js, the same drawing code as `--map` pages);
// follow-up questions go to /v1/threads/{id}/messages. A badge says whether the server is ready
// (/readyz) until it is.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  let threadId = null;
  let busy = false;
  let followUp = false;  // the events on the wire belong to a follow-up question
  const geo = geoagentMap("map", { countriesUrl: "/assets/world/countries-50m.json", predictions: [], panel: false });

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    const key = $("api-key").value.trim();
    if (key) { h["X-API-Key"] = key; }
    return h;
  }
  $("api-key").value = localStorage.getItem("geoagent-api-key") || "";
  $("api-key").addEventListener("change", () => localStorage.setItem("geoagent-api-key", $("api-key").value.trim()));

  function status(text, error) {
    $("status").textContent = text || "";
    $("status").classList.toggle("error", !!error);
  }

  async function errorText(resp) {
    try {
      const body = await resp.json();
      const e = body.error || {};
      return `${e.message || resp.statusText}` + (e.fix ? `\nfix: ${e.fix}` : "");
    } catch (_) { return `HTTP ${resp.status}`; }
  }

  function addMessage(role, text) {
    const d = document.createElement("div");
    d.className = `msg ${role}`;
    d.textContent = text;
    $("messages").appendChild(d);
    d.scrollIntoView({ block: "nearest" });
  }

  function tokens(reset) {
    if (reset) { $("tokens").textContent = ""; $("tokens-box").hidden = true; }
    return $("tokens");
  }

  function reset() {
    threadId = null;
    $("steps").innerHTML = "";
    $("messages").innerHTML = "";
    tokens(true);
    $("answer").hidden = true;
    $("question").disabled = $("ask").disabled = true;
    geo.clear();
    status("");
    for (const li of $("threads").children) { li.classList.remove("active"); }
  }

  function showAnswer(pred) {
    const place = [pred.place.city, pred.place.region, pred.place.country].filter(Boolean).join(", ");
    $("answer-place").textContent = place || "an unnamed place";
    $("answer-coords").textContent = `${pred.lat.toFixed(5)}, ${pred.lon.toFixed(5)}`;
    $("answer-confidence").textContent = pred.confidence.toFixed(2);
    $("answer-calibrated").textContent = pred.calibrated ? "(calibrated)" : "(not calibrated)";
    const probs = Object.entries(pred.probabilities || {}).map(([k, v]) => `≤${k}: ${(100 * v).toFixed(0)}%`).join(" · ");
    $("answer-probs").textContent = probs ? `P(error ${probs})` : "";
    const area = Object.entries(pred.search_area_km2 || {}).map(([k, v]) => `${k}%: ${Math.round(v).toLocaleString()} km²`).join(" · ");
    $("answer-area").textContent = area ? `Search area ${area}` : "";
    $("answer-rationale").textContent = pred.rationale || "";
    $("answer").hidden = false;
    geo.show(pred);
  }

  // the chat's line for an answer: where and how sure; the rationale is shown once, in the answer box
  function answerLine(pred) {
    const sure = pred.probabilities && pred.probabilities["25"] != null
      ? `P(within 25 km) ${(100 * pred.probabilities["25"]).toFixed(0)}%` : `confidence ${pred.confidence.toFixed(2)}`;
    return `${$("answer-place").textContent}: ${$("answer-coords").textContent} (${sure}). The reasons are above the map.`;
  }

  function onEvent(name, data) {
    if (name === "thread") {
      threadId = data.thread_id;
    } else if (name === "step_start") {
      const li = document.createElement("li");
      li.className = "running";
      li.dataset.tool = data.tool;
      li.textContent = `${data.tool} …`;
      $("steps").appendChild(li);
    } else if (name === "step_end") {
      let li = [...$("steps").querySelectorAll("li.running")].find(x => x.dataset.tool === data.tool);
      if (!li) { li = document.createElement("li"); $("steps").appendChild(li); }
      li.className = data.error ? "failed done" : "done";
      li.textContent = `${data.tool} (${Math.round(data.latency_ms || 0)} ms): ${data.error || data.summary || ""}`;
    } else if (name === "token") {
      const strip = tokens(false);
      $("tokens-box").hidden = false;
      $("tokens-box").open = true;
      strip.textContent += data.text;
      strip.scrollTop = strip.scrollHeight;  // follow the text as it is written
    } else if (name === "prediction") {
      showAnswer(data.prediction);
      if (followUp) { return; }
      addMessage("assistant", answerLine(data.prediction));
    } else if (name === "reply") {
      $("tokens-box").open = false;  // the reply is in the chat now; the streamed text stays one click away
      addMessage("assistant", data.text || (data.error ? `(no answer: ${data.error})` : ""));
    } else if (name === "error") {
      const e = data.error || {};
      status(`error: ${e.message}` + (e.fix ? `\nfix: ${e.fix}` : ""), true);
    } else if (name === "done") {
      status("done");
      $("question").disabled = $("ask").disabled = false;
      loadThreads();
    }
  }

  async function readStream(resp) {
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) { break; }
      buf += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        let name = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) { name = line.slice(6).trim(); }
          else if (line.startsWith("data:")) { data.push(line.slice(5).trimStart()); }
        }
        if (data.length) { onEvent(name, JSON.parse(data.join("\n"))); }
      }
    }
  }

  async function locate(body, contentType, label) {
    if (busy) { return; }
    busy = true;
    reset();
    addMessage("user", `Where was this photo taken? (${label})`);
    status("working…");
    try {
      const h = headers(contentType ? { "Content-Type": contentType } : {});
      const resp = await fetch("/v1/locate/stream", { method: "POST", body, headers: h });
      if (!resp.ok) { status(`error: ${await errorText(resp)}`, true); return; }
      await readStream(resp);
    } catch (err) {
      status(`error: ${err}`, true);
    } finally {
      busy = false;
    }
  }

  function locateFile(file) {
    if (!file) { return; }
    const preview = $("preview");
    preview.src = URL.createObjectURL(file);
    preview.hidden = false;
    const form = new FormData();
    form.append("image", file, file.name || "pasted.png");
    locate(form, null, file.name || "pasted image");
  }

  $("file").addEventListener("change", (e) => locateFile(e.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const file = [...(e.dataTransfer.files || [])].find(f => f.type.startsWith("image/"));
    if (file) { locateFile(file); } else {
      const url = e.dataTransfer.getData("text/uri-list") || e.dataTransfer.getData("text/plain");
      if (url) { $("url").value = url.trim(); $("url-form").requestSubmit(); }
    }
  });
  document.addEventListener("paste", (e) => {
    if (e.target === $("question") || e.target === $("url") || e.target === $("api-key")) { return; }
    const item = [...(e.clipboardData.items || [])].find(i => i.type.startsWith("image/"));
    if (item) { e.preventDefault(); locateFile(item.getAsFile()); }
  });
  $("url-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const url = $("url").value.trim();
    if (!url) { return; }
    $("preview").hidden = true;
    locate(JSON.stringify({ url }), "application/json", url);
  });

  $("ask-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = $("question").value.trim();
    if (!text || !threadId || busy) { return; }
    $("question").value = "";
    addMessage("user", text);
    busy = followUp = true;
    tokens(true);
    status("thinking…");
    try {
      const resp = await fetch(`/v1/threads/${threadId}/messages/stream`, {
        method: "POST", headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify({ text }),
      });
      if (!resp.ok) { status(`error: ${await errorText(resp)}`, true); return; }
      await readStream(resp);
    } catch (err) {
      status(`error: ${err}`, true);
    } finally {
      busy = followUp = false;
    }
  });

  async function openThread(id) {
    if (busy) { return; }
    const resp = await fetch(`/v1/threads/${id}`, { headers: headers() });
    if (!resp.ok) { status(`error: ${await errorText(resp)}`, true); return; }
    const thread = await resp.json();
    reset();
    threadId = thread.thread_id;
    $("preview").hidden = true;
    addMessage("user", `Where was this photo taken? (${thread.title})`);
    if (thread.prediction) {
      showAnswer(thread.prediction);
      addMessage("assistant", answerLine(thread.prediction));
    }
    for (const t of thread.turns) { addMessage(t.role === "user" ? "user" : "assistant", t.text); }
    $("question").disabled = $("ask").disabled = !thread.prediction;
    for (const li of $("threads").children) { li.classList.toggle("active", li.dataset.id === id); }
  }

  async function loadThreads() {
    const resp = await fetch("/v1/threads", { headers: headers() });
    if (!resp.ok) { return; }
    const list = $("threads");
    list.innerHTML = "";
    for (const t of await resp.json()) {
      const li = document.createElement("li");
      li.dataset.id = t.thread_id;
      li.classList.toggle("active", t.thread_id === threadId);
      li.textContent = t.title;
      const small = document.createElement("small");
      small.textContent = t.place || (t.lat != null ? `${t.lat.toFixed(2)}, ${t.lon.toFixed(2)}` : "no answer");
      li.appendChild(small);
      li.addEventListener("click", () => openThread(t.thread_id));
      list.appendChild(li);
    }
  }

  // the server loads the image encoder and the gallery at start: say so until /readyz answers ready
  async function watchReady(delay) {
    let body = null;
    try {
      const resp = await fetch("/readyz");
      body = await resp.json();
    } catch (_) { body = { ready: false, detail: "the server does not answer" }; }
    const badge = $("ready");
    badge.className = body.ready ? "ready" : (body.fix ? "failed" : "warming");
    badge.textContent = body.ready ? "ready" : (body.fix ? `not ready: ${body.detail} (fix: ${body.fix})` : `${body.detail || "warming up"}… (a photo sent now takes longer)`);
    if (!body.ready) { setTimeout(() => watchReady(Math.min(delay * 1.5, 5000)), delay); }
  }

  $("new-chat").addEventListener("click", () => { reset(); $("preview").hidden = true; $("url").value = ""; });
  watchReady(500);
  loadThreads();
})();
