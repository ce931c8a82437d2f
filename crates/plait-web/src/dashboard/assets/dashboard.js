// plait's dashboard: reads the server's snapshots (server-sent events, read through fetch
// so that the token travels in a header, never in a URL) and draws them. Data reaches the
// page as text nodes only, never as markup.
"use strict";

const csrf = document.querySelector('meta[name="plait-csrf"]').content;
const tokenNeeded = document.querySelector('meta[name="plait-token-needed"]').content === "yes";
const SVG = "http://www.w3.org/2000/svg";
let latest = null;
let receivedAt = 0;

function token() { return sessionStorage.getItem("plait-token"); }

function headers(extra) {
  const h = Object.assign({ "X-Plait-CSRF": csrf }, extra || {});
  if (token()) h.Authorization = "Bearer " + token();
  return h;
}

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: headers({ "Content-Type": "application/json" }),
    body: JSON.stringify(body),
  });
  if (response.status === 401) { askForToken(); }
  return response;
}

function askForToken() {
  document.getElementById("login").hidden = false;
  document.querySelector("main").hidden = true;
}

document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("plait-token", document.getElementById("token").value);
  document.getElementById("login").hidden = true;
  document.querySelector("main").hidden = false;
  listen();
});

function linkState(up, text) {
  const link = document.getElementById("link");
  link.className = "link " + (up ? "up" : "down");
  link.textContent = text;
}

let listening = false;
async function listen() {
  if (listening) return;
  listening = true;
  try {
    const response = await fetch("/api/events", { headers: headers({ Accept: "text/event-stream" }) });
    if (response.status === 401) { listening = false; linkState(false, "needs its token"); askForToken(); return; }
    if (!response.ok) throw new Error("HTTP " + response.status);
    linkState(true, "live");
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).replace(/^ /, "")).join("\n");
        if (data) { latest = JSON.parse(data); receivedAt = Date.now(); render(latest); }
      }
    }
    throw new Error("the server closed the stream");
  } catch (error) {
    linkState(false, "reconnecting…");
    listening = false;
    setTimeout(listen, 1000);
  }
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function fill(tableId, items, draw) {
  const body = document.querySelector("#" + tableId + " tbody");
  const rows = items.map((item) => { const tr = document.createElement("tr"); draw(tr, item); return tr; });
  body.replaceChildren(...rows);
}

function age(ms) {
  if (ms < 0) ms = 0;
  if (ms < 1000) return ms + " ms";
  if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
  if (ms < 3600000) return Math.floor(ms / 60000) + " min";
  return (ms / 3600000).toFixed(1) + " h";
}

// The store's clock as of now: its time in the snapshot, plus what passed here since.
function storeNow() {
  return latest && latest.queue ? latest.queue.store_now + (Date.now() - receivedAt) : Date.now();
}

function renderQueue(queue) {
  const section = document.getElementById("queue");
  section.hidden = !queue;
  if (!queue) return;
  const error = document.getElementById("queue-error");
  error.hidden = !queue.error;
  error.textContent = queue.error || "";
  if (queue.error) return;
  fill("queues", queue.queues, (tr, q) => {
    tr.dataset.queue = q.queue;
    cell(tr, q.queue);
    for (const key of ["ready", "scheduled", "running", "succeeded", "dead", "cancelled", "rate"]) {
      cell(tr, q[key], "num").dataset.field = key;
    }
  });
  const now = storeNow();
  fill("workers", queue.workers, (tr, w) => {
    cell(tr, w.name);
    cell(tr, w.host + " (pid " + w.pid + ")");
    cell(tr, w.state, "state-" + w.state);
    cell(tr, age(now - w.seen_at) + " ago").dataset.seen = w.seen_at;
    // Its leases as the store holds them now, not as of its last heartbeat.
    cell(tr, w.current.length + " / " + w.concurrency, "num");
    cell(tr, w.current.map((t) => "#" + t.id + " " + t.runs).join(", "));
    cell(tr, w.succeeded, "num");
    cell(tr, w.failed, "num");
  });
  fill("running", queue.running, (tr, t) => {
    tr.dataset.id = t.id;
    cell(tr, t.id, "num"); cell(tr, t.queue); cell(tr, t.runs); cell(tr, t.worker);
    cell(tr, t.attempts, "num");
    cell(tr, t.started_at ? age(now - t.started_at) : "").dataset.since = t.started_at || "";
  });
  fill("retrying", queue.retrying, (tr, t) => {
    cell(tr, t.id, "num"); cell(tr, t.queue); cell(tr, t.runs); cell(tr, t.attempts, "num");
    cell(tr, t.error, "error");
    cell(tr, age(t.ready_at - now));
  });
  fill("dead", queue.dead, (tr, t) => {
    tr.dataset.id = t.id;
    cell(tr, t.id, "num"); cell(tr, t.queue); cell(tr, t.runs); cell(tr, t.reason, "error");
    const td = cell(tr, "");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "requeue";
    button.textContent = "Requeue";
    button.addEventListener("click", async () => {
      button.disabled = true;
      const response = await post("/api/dead/requeue", { ids: [t.id] });
      if (!response.ok) { button.disabled = false; alert((await response.json()).error); }
    });
    td.appendChild(button);
  });
}

document.getElementById("requeue-all").addEventListener("click", async () => {
  const response = await post("/api/dead/requeue", { all: true });
  if (!response.ok && response.status !== 401) alert((await response.json()).error);
});

function svgElement(name, attributes, parent) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  if (parent) parent.appendChild(element);
  return element;
}

function depths(tasks) {
  const byName = new Map(tasks.map((t) => [t.name, t]));
  const depth = new Map();
  const visit = (t, seen) => {
    if (depth.has(t.name)) return depth.get(t.name);
    if (seen.has(t.name)) return 0;
    seen.add(t.name);
    let d = 0;
    for (const need of t.needs) { const n = byName.get(need); if (n) d = Math.max(d, visit(n, seen) + 1); }
    depth.set(t.name, d);
    return d;
  };
  for (const t of tasks) visit(t, new Set());
  return depth;
}

function drawGraph(run) {
  const svg = document.getElementById("graph");
  const depth = depths(run.tasks);
  const columns = [];
  for (const t of run.tasks) { const d = depth.get(t.name); (columns[d] = columns[d] || []).push(t); }
  const W = 120, H = 22, GX = 50, GY = 10;
  const place = new Map();
  columns.forEach((column, x) => column.forEach((t, y) => place.set(t.name, { x: 10 + x * (W + GX), y: 10 + y * (H + GY) })));
  const width = 20 + columns.length * (W + GX), height = 20 + Math.max(1, ...columns.map((c) => c.length)) * (H + GY);
  svg.setAttribute("viewBox", "0 0 " + width + " " + height);
  svg.replaceChildren();
  for (const t of run.tasks) {
    for (const need of t.needs) {
      const a = place.get(need), b = place.get(t.name);
      if (!a || !b) continue;
      const mx = (a.x + W + b.x) / 2;
      svgElement("path", { class: "edge", d: `M${a.x + W},${a.y + H / 2} C${mx},${a.y + H / 2} ${mx},${b.y + H / 2} ${b.x},${b.y + H / 2}` }, svg);
    }
  }
  for (const t of run.tasks) {
    const p = place.get(t.name);
    const g = svgElement("g", { class: "node", "data-name": t.name, "data-state": t.state }, svg);
    svgElement("title", {}, g).textContent = t.name + ": " + t.state + " (" + t.strand + ")";
    svgElement("rect", { x: p.x, y: p.y, width: W, height: H, class: t.state }, g);
    const label = svgElement("text", { x: p.x + 6, y: p.y + 15 }, g);
    label.textContent = t.name.length > 17 ? t.name.slice(0, 16) + "…" : t.name;
  }
}

function drawStream(run) {
  const svg = document.getElementById("stream");
  const elapsed = run.elapsed_ms + (run.finished ? 0 : Date.now() - receivedAt);
  const ran = run.tasks.filter((t) => t.started_ms !== null && t.slot !== null);
  const lanes = Math.max(1, ...ran.map((t) => t.slot + 1));
  const end = Math.max(1, elapsed, ...ran.map((t) => t.ended_ms || 0));
  const W = 600, LANE = 22, LEFT = 50;
  svg.setAttribute("viewBox", "0 0 " + (W + LEFT + 10) + " " + (lanes * LANE + 30));
  svg.replaceChildren();
  for (let lane = 0; lane < lanes; lane++) {
    svgElement("text", { x: 4, y: lane * LANE + 15 }, svg).textContent = "slot " + lane;
  }
  for (const t of ran) {
    const x = LEFT + (t.started_ms / end) * W;
    const w = Math.max(1, (((t.ended_ms === null ? elapsed : t.ended_ms) - t.started_ms) / end) * W);
    const g = svgElement("g", { class: "bar", "data-name": t.name }, svg);
    svgElement("title", {}, g).textContent = t.name + ": " + t.state + ", " + age((t.ended_ms === null ? elapsed : t.ended_ms) - t.started_ms);
    svgElement("rect", { x, y: t.slot * LANE + 3, width: w, height: LANE - 6, class: t.state }, g);
    if (w > 40) svgElement("text", { x: x + 3, y: t.slot * LANE + 15 }, g).textContent = t.name;
  }
  svgElement("text", { x: LEFT, y: lanes * LANE + 20 }, svg).textContent = "0";
  svgElement("text", { x: LEFT + W - 40, y: lanes * LANE + 20 }, svg).textContent = age(end);
}

function renderRun(run) {
  const section = document.getElementById("run");
  section.hidden = !run;
  if (!run) return;
  document.getElementById("run-job").textContent = run.job;
  const counts = {};
  for (const t of run.tasks) counts[t.state] = (counts[t.state] || 0) + 1;
  document.getElementById("run-summary").textContent =
    Object.entries(counts).map(([s, n]) => n + " " + s).join(", ") + (run.finished ? " — finished" : "");
  drawGraph(run);
  drawStream(run);
}

function render(snapshot) {
  renderRun(snapshot.run);
  renderQueue(snapshot.queue);
  document.getElementById("nothing").hidden = Boolean(snapshot.run || snapshot.queue);
}

// Ages and a running run's stream move on between snapshots.
setInterval(() => {
  document.getElementById("clock").textContent = new Date().toLocaleTimeString();
  if (!latest) return;
  const now = storeNow();
  for (const td of document.querySelectorAll("td[data-seen]")) td.textContent = age(now - Number(td.dataset.seen)) + " ago";
  for (const td of document.querySelectorAll("td[data-since]")) if (td.dataset.since) td.textContent = age(now - Number(td.dataset.since));
  if (latest.run && !latest.run.finished) drawStream(latest.run);
}, 1000);

if (tokenNeeded && !token()) askForToken(); else listen();
