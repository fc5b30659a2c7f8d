// Endpoints studio: one page, hash routes, plain DOM and SVG (no framework, nothing copied).
// Every text from the server goes in through textContent (h() below), never as HTML.
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const COLORS = ["#0b63c5", "#e8590c", "#2b8a3e", "#862e9c", "#c2255c", "#1098ad", "#5c940d", "#364fc7"];
const main = document.getElementById("main");
let timers = [];
let streams = [];

// ------------------------------------------------------------------------------------------------ helpers
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "style") setStyle(el, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// Styles go through the CSSOM: the Content-Security-Policy (style-src 'self') blocks style attributes.
function setStyle(el, text) {
  for (const decl of text.split(";")) {
    const at = decl.indexOf(":");
    if (at > 0) el.style.setProperty(decl.slice(0, at).trim(), decl.slice(at + 1).trim());
  }
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const c of children.flat(Infinity)) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

async function api(method, path, body, headers) {
  const init = { method, headers: { ...(headers || {}) }, credentials: "same-origin" };
  if (method !== "GET") init.headers["X-CSRF-Token"] = CSRF;
  if (body !== undefined) {
    if (body instanceof Blob || body instanceof ArrayBuffer || typeof body === "string") init.body = body;
    else { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
  }
  const response = await fetch(path, init);
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (!response.ok) throw new Error((data && data.error) || `HTTP ${response.status}`);
  return data;
}

function toast(text) {
  const el = document.getElementById("toast");
  el.textContent = text;
  el.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => el.classList.remove("show"), 3500);
}

function badge(state) { return h("span", { class: `badge ${state}`, "data-state": state }, state); }
function enc(s) { return encodeURIComponent(s); }
function every(ms, fn) { timers.push(setInterval(fn, ms)); }
function colorOf(names, name) { return COLORS[Math.max(0, names.indexOf(name)) % COLORS.length]; }
function fmt(n, digits) { return n === null || n === undefined ? "–" : Number(n).toFixed(digits); }
function when(t) { return t ? new Date(t * 1000).toLocaleTimeString() : "–"; }

function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
  const area = h("textarea", {}, text);
  document.body.append(area);
  area.select();
  document.execCommand("copy");
  area.remove();
  return Promise.resolve();
}

function crumbs(...parts) {
  const nav = document.getElementById("crumbs");
  nav.replaceChildren(...parts.flatMap((p, i) => [i ? " / " : "", p]));
}

function stopAll() {
  timers.forEach(clearInterval);
  timers = [];
  streams.forEach((s) => s.close());
  streams = [];
}

function failure(e) { return h("p", { class: "error" }, String(e.message || e)); }

// ------------------------------------------------------------------------------------------------ routes
async function route() {
  stopAll();
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent).filter(Boolean);
  try {
    if (parts[0] === "online" && parts[1]) await onlinePage(parts[1], parts[2] || "details");
    else if (parts[0] === "batch" && parts[1]) await batchPage(parts[1]);
    else await listPage();
  } catch (e) {
    main.replaceChildren(failure(e));
  }
}
window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", route);

// ------------------------------------------------------------------------------------------------ list
async function listPage() {
  crumbs(h("span", {}, "Endpoints"));
  const body = h("tbody");
  main.replaceChildren(
    h("h1", {}, "Endpoints"),
    h("table", { id: "endpoints" },
      h("thead", {}, h("tr", {}, ["Name", "Type", "State", "Auth", "Scoring URI", "Deployments", "Requests/s"]
        .map((t, i) => h("th", { class: i >= 5 ? "num" : null }, t)))),
      body),
  );
  async function refresh() {
    const data = await api("GET", "/api/endpoints");
    document.getElementById("backend").textContent = data.stack ? `cluster stack ${data.stack}` : `${data.backend} endpoints`;
    body.replaceChildren(...data.endpoints.map((e) => h("tr", { "data-endpoint": e.name },
      h("td", {}, h("a", { href: `#/${e.kind}/${enc(e.name)}` }, e.name)),
      h("td", {}, e.kind),
      h("td", {}, badge(e.state)),
      h("td", {}, e.auth_mode),
      h("td", { class: "mono" }, e.scoring_uri || "–"),
      h("td", { class: "num" }, e.deployment_count),
      h("td", { class: "num rps" }, e.kind === "online" ? fmt(e.requests_per_second, 1) : "–"),
    )));
    if (!data.endpoints.length) {
      body.append(h("tr", {}, h("td", { colspan: 7, class: "muted" },
        "No endpoints yet: start one with `endpoints local up DIR --detach`, or pass --batch DIR.")));
    }
  }
  await refresh();
  every(3000, () => refresh().catch(() => {}));
}

// ------------------------------------------------------------------------------------------------ online
const TABS = [["details", "Details"], ["test", "Test"], ["consume", "Consume"], ["logs", "Logs"], ["metrics", "Metrics"]];

async function onlinePage(name, tab) {
  const ep = await api("GET", `/api/endpoints/${enc(name)}`);
  crumbs(h("a", { href: "#/" }, "Endpoints"), h("span", {}, name));
  const content = h("div", { id: "tab-content" });
  main.replaceChildren(
    h("h1", {}, name, badge(ep.state), h("span", { class: "muted" }, `online · ${ep.auth_mode} auth`)),
    h("nav", { class: "tabs" }, TABS.map(([id, label]) =>
      h("a", { href: `#/online/${enc(name)}/${id}`, class: id === tab ? "active" : null, id: `tab-${id}` }, label))),
    content,
  );
  const names = ep.deployments.map((d) => d.name);
  if (tab === "test") testTab(content, ep, names);
  else if (tab === "consume") consumeTab(content, ep);
  else if (tab === "logs") await logsTab(content, ep);
  else if (tab === "metrics") await metricsTab(content, ep, names);
  else detailsTab(content, ep, names);
}

function trafficBar(id, ep, names, weights, label) {
  const total = Object.values(weights).reduce((a, b) => a + b, 0);
  const segments = names.filter((n) => (weights[n] || 0) > 0).map((n) =>
    h("div", { style: `width:${weights[n]}%;background:${colorOf(names, n)}`, title: `${n}: ${weights[n]} %`,
      "data-deployment": n, "data-percent": weights[n] }, `${n} ${weights[n]}%`));
  return h("div", { class: "row" }, h("span", { class: "barlabel" }, label),
    h("div", { class: "bar", id, "data-total": total }, segments));
}

// A cluster change's preview: the stack file edits, the resources that change, the policy pack's findings, and a
// Confirm button (disabled when the preview was refused).
function previewView(p, apply) {
  const status = h("p", { class: "error", id: "preview-error" }, p.error || "");
  const confirmButton = h("button", { class: "primary", id: "preview-confirm", disabled: p.refused, onclick: async () => {
    confirmButton.disabled = true;
    status.textContent = "";
    try { await apply(); } catch (err) { status.textContent = err.message; } finally { confirmButton.disabled = p.refused; }
  } }, "Confirm and apply");
  return h("div", { class: "panel" },
    h("h3", {}, `Preview of stack ${p.stack}`),
    h("ul", { id: "preview-changes" }, p.changes.map((c) => h("li", { class: "mono" }, c))),
    h("table", { id: "preview-steps" }, h("thead", {}, h("tr", {}, ["Change", "Type", "Resource", "Properties"].map((t) => h("th", {}, t)))),
      h("tbody", {}, p.steps.map((s) => h("tr", { "data-op": s.op }, h("td", {}, s.op), h("td", { class: "mono" }, s.type),
        h("td", {}, s.name), h("td", { class: "mono" }, s.diffs.join(", ")))))),
    h("h3", {}, `Policies (${Object.keys(p.policy_packs).join(", ") || "no pack ran"})`),
    p.policies.length === 0 ? h("p", { class: "muted" }, "No findings.") :
      h("table", { id: "preview-policies" }, h("thead", {}, h("tr", {}, ["Level", "Policy", "Message"].map((t) => h("th", {}, t)))),
        h("tbody", {}, p.policies.map((x) => h("tr", {}, h("td", {}, x.level), h("td", {}, x.policy), h("td", {}, x.message))))),
    h("div", { class: "row" }, confirmButton, h("span", { class: "muted mono" }, `preview ${p.id}`)),
    status);
}

function detailsTab(content, ep, names) {
  const bars = h("div", { class: "bars" });
  function drawBars(e) {
    bars.replaceChildren(trafficBar("traffic-bar", e, names, e.traffic, "Live traffic"),
      trafficBar("mirror-bar", e, names, e.mirror_traffic, "Mirrored"));
  }
  drawBars(ep);
  const deployments = h("tbody");
  function drawDeployments(e) {
    deployments.replaceChildren(...e.deployments.map((d) => h("tr", { "data-deployment": d.name },
      h("td", {}, h("i", { style: `display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px;background:${colorOf(names, d.name)}` }), d.name),
      h("td", {}, badge(d.state)),
      h("td", { class: "num" }, d.instance_count ?? "–"),
      h("td", { class: "num" }, d.processes),
      h("td", {}, d.instance_type || "–"),
      h("td", { class: "mono" }, d.image || "–"),
      h("td", { class: "mono" }, d.model || "–"),
      h("td", { class: "num" }, `${d.traffic}%`),
      h("td", { class: "num" }, `${d.mirror}%`),
    )));
  }
  drawDeployments(ep);
  const form = h("div", { class: "panel", id: "traffic-form", hidden: true });
  function openForm(e) {
    const inputs = {};
    const sum = h("span", { class: "muted", id: "traffic-sum" });
    const error = h("p", { class: "error", id: "traffic-error" });
    function updateSum() {
      const total = names.reduce((a, n) => a + Number(inputs[n].traffic.value || 0), 0);
      sum.textContent = `live total ${total} % (must be 0 or 100)`;
    }
    const rows = names.map((n) => {
      inputs[n] = {
        traffic: h("input", { type: "number", min: 0, max: 100, value: e.traffic[n] || 0, name: `traffic-${n}`, oninput: updateSum }),
        mirror: h("input", { type: "number", min: 0, max: 50, value: e.mirror_traffic[n] || 0, name: `mirror-${n}` }),
      };
      return h("tr", {}, h("td", {}, n), h("td", {}, inputs[n].traffic, " %"), h("td", {}, inputs[n].mirror, " %"));
    });
    const save = h("button", { class: "primary", id: "traffic-save", onclick: async () => {
      const traffic = {}, mirror = {};
      for (const n of names) {
        traffic[n] = Number(inputs[n].traffic.value || 0);
        const m = Number(inputs[n].mirror.value || 0);
        if (m > 0) mirror[n] = m;
      }
      save.disabled = true;
      error.textContent = "";
      try {
        const path = `/api/endpoints/${enc(e.name)}/traffic`;
        const updated = await api("POST", path, { traffic, mirror_traffic: mirror });
        if (updated.preview) {  // cluster stack: show the preview, apply on confirm
          preview.replaceChildren(previewView(updated.preview, async () => {
            const applied = await api("POST", path, { traffic, mirror_traffic: mirror, confirm: updated.preview.id });
            drawBars(applied);
            drawDeployments(applied);
            form.hidden = true;
            toast(`Traffic applied to stack ${applied.stack}`);
          }));
          return;
        }
        drawBars(updated);
        drawDeployments(updated);
        form.hidden = true;
        toast(updated.applied ? "Traffic updated and applied to the running router" : "Saved to the endpoint file (endpoint not running)");
      } catch (err) {
        error.textContent = err.message;
      } finally {
        save.disabled = false;
      }
    } }, e.stack ? "Preview" : "Update");
    const preview = h("div", { id: "traffic-preview" });
    form.replaceChildren(
      h("h2", {}, "Edit traffic"),
      h("p", { class: "muted" }, e.stack
        ? `Saved into ${e.endpoint_file}: previewed with the policy pack first, applied to stack ${e.stack} only when you confirm.`
        : `Saved into ${e.endpoint_file} and applied at once (as \`endpoints local update\`).`),
      h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Deployment"), h("th", {}, "Live traffic"), h("th", {}, "Mirror"))), h("tbody", {}, rows)),
      h("div", { class: "row" }, save, h("button", { onclick: () => { form.hidden = true; } }, "Cancel"), sum),
      error,
      preview,
    );
    updateSum();
    form.hidden = false;
  }
  const info = h("dl", { class: "grid" },
    h("dt", {}, "Scoring URI"), h("dd", { class: "mono" }, ep.scoring_uri),
    h("dt", {}, "Swagger URI"), h("dd", { class: "mono" }, ep.swagger_uri),
    h("dt", {}, "Auth mode"), h("dd", {}, ep.auth_mode),
    h("dt", {}, "Endpoint file"), h("dd", { class: "mono" }, ep.endpoint_file),
    h("dt", {}, "Requests/s"), h("dd", { id: "rps" }, fmt(ep.requests_per_second, 1)),
  );
  content.replaceChildren(
    h("div", { class: "panel" }, info),
    h("div", { class: "panel" },
      h("div", { class: "row" }, h("h2", { style: "margin:0" }, "Traffic"),
        h("button", { id: "traffic-edit", onclick: async () => openForm(await api("GET", `/api/endpoints/${enc(ep.name)}`)) }, "Edit traffic")),
      bars),
    form,
    h("h2", {}, "Deployments"),
    h("table", { id: "deployments" }, h("thead", {}, h("tr", {}, ["Name", "State", "Instances", "Processes",
      "Instance type", "Image", "Model", "Traffic", "Mirror"].map((t) => h("th", {}, t)))), deployments),
  );
  every(3000, async () => {
    if (!form.hidden) return;
    const e = await api("GET", `/api/endpoints/${enc(ep.name)}`).catch(() => null);
    if (!e) return;
    drawBars(e);
    drawDeployments(e);
    document.getElementById("rps").textContent = fmt(e.requests_per_second, 1);
  });
}

function testTab(content, ep, names) {
  const pick = h("select", { id: "test-deployment" }, h("option", { value: "" }, "Let the traffic weights choose"),
    names.map((n) => h("option", { value: n }, n)));
  const body = h("textarea", { id: "test-body", spellcheck: "false" }, '{"data": [1, 2, 3]}');
  const file = h("input", { type: "file", id: "test-file" });
  const result = h("div", { id: "test-result" });
  const send = h("button", { class: "primary", id: "test-send", onclick: async () => {
    send.disabled = true;
    result.replaceChildren(h("p", { class: "muted" }, "Sending…"));
    try {
      let payload = body.value, type = "application/json";
      if (file.files.length) {
        payload = await file.files[0].arrayBuffer();
        type = file.files[0].type || "application/octet-stream";
      }
      const q = pick.value ? `?deployment=${enc(pick.value)}` : "";
      const r = await api("POST", `/api/endpoints/${enc(ep.name)}/invoke${q}`, payload, { "Content-Type": type });
      let shown = r.body;
      try { shown = JSON.stringify(JSON.parse(r.body), null, 2); } catch (e) { /* not JSON: as it came */ }
      result.replaceChildren(
        h("div", { class: "row" },
          h("span", { class: `badge s${String(r.status)[0]}`, id: "test-status" }, `HTTP ${r.status}`),
          h("span", { id: "test-latency" }, `${fmt(r.latency_ms, 1)} ms`),
          h("span", { class: "muted" }, "answered by "),
          h("strong", { id: "test-answered-by" }, r.headers["azureml-model-deployment"] || "–")),
        h("h2", {}, "Response body"), h("pre", { id: "test-response" }, shown),
        h("h2", {}, "Response headers"),
        h("table", {}, h("tbody", {}, Object.entries(r.headers).map(([k, v]) => h("tr", {}, h("td", { class: "mono" }, k), h("td", { class: "mono" }, v))))),
      );
    } catch (e) {
      result.replaceChildren(failure(e));
    } finally {
      send.disabled = false;
    }
  } }, "Test");
  content.replaceChildren(h("div", { class: "panel" },
    h("div", { class: "row" }, h("label", {}, "Deployment ", pick)),
    h("h2", {}, "Request body (JSON)"), body,
    h("div", { class: "row" }, h("label", {}, "or send a file ", file),
      h("button", { onclick: () => { file.value = ""; } }, "Clear file")),
    h("div", { class: "row" }, send)), result);
}

function consumeTab(content, ep) {
  const panels = [];
  const uri = h("dl", { class: "grid" },
    h("dt", {}, "REST endpoint"), h("dd", {}, h("span", { class: "mono", id: "consume-uri" }, ep.scoring_uri), " ",
      h("button", { onclick: () => copyText(ep.scoring_uri).then(() => toast("Scoring URI copied")) }, "Copy")),
    h("dt", {}, "Swagger URI"), h("dd", {}, h("span", { class: "mono" }, ep.swagger_uri), " ",
      h("a", { href: `/api/endpoints/${enc(ep.name)}/swagger.json`, target: "_blank", rel: "noopener", id: "swagger-link" }, "open (authenticated by the studio)")),
  );
  panels.push(h("div", { class: "panel" }, h("h2", { style: "margin-top:0" }, "Endpoint"), uri));
  if (ep.auth_mode === "key") {
    const revealed = {};
    const mask = "••••••••••••••••••••••••••••••••";
    const keyRow = (which, label) => {
      const value = h("span", { class: "key", id: `key-${which}` }, mask);
      const reveal = async () => {
        const keys = await api("POST", `/api/endpoints/${enc(ep.name)}/keys/reveal`);
        revealed.primary = keys.primaryKey;
        revealed.secondary = keys.secondaryKey;
        return revealed[which];
      };
      const show = h("button", { id: `key-${which}-show`, onclick: async () => {
        if (value.textContent !== mask) { value.textContent = mask; show.textContent = "Show"; return; }
        value.textContent = await reveal();
        show.textContent = "Hide";
      } }, "Show");
      return [h("dt", {}, label), h("dd", {}, value, " ", show, " ",
        h("button", { onclick: async () => { await copyText(await reveal()); toast(`${label} copied`); } }, "Copy"), " ",
        h("button", { class: "danger", id: `key-${which}-regenerate`, onclick: async () => {
          if (!confirm(`Regenerate the ${which} key? Clients using it stop working.`)) return;
          const path = `/api/endpoints/${enc(ep.name)}/keys/regenerate`;
          const first = await api("POST", path, { key: which });
          if (first.preview) {  // cluster stack: the preview, then the confirm
            const p = first.preview;
            const lines = p.steps.map((s) => `${s.op} ${s.type} ${s.name}`).concat(p.policies.map((x) => `[${x.level}] ${x.policy}: ${x.message}`));
            if (p.refused) { toast(p.error); return; }
            if (!confirm(`Stack ${p.stack} will change:\n${lines.join("\n")}\n\nApply?`)) return;
            await api("POST", path, { key: which, confirm: p.id });
          }
          value.textContent = mask;
          show.textContent = "Show";
          toast(`${label} regenerated`);
        } }, "Regenerate"))];
    };
    panels.push(h("div", { class: "panel" }, h("h2", { style: "margin-top:0" }, "Authentication"),
      h("dl", { class: "grid" }, keyRow("primary", "Primary key"), keyRow("secondary", "Secondary key"))));
  } else {
    panels.push(h("div", { class: "panel" }, h("h2", { style: "margin-top:0" }, "Authentication"),
      h("p", {}, `This endpoint uses ${ep.auth_mode}: get a token with `, h("code", {}, `endpoints get-credentials ${ep.name}`), ".")));
  }
  const curl = `curl -X POST "${ep.scoring_uri}" \\\n  -H "Authorization: Bearer $ENDPOINT_KEY" \\\n  -H "Content-Type: application/json" \\\n  -d @request.json`;
  const python = `import os\nfrom endpoints.sdk import OnlineEndpointClient\n\nclient = OnlineEndpointClient("${ep.scoring_uri}", key=os.environ["ENDPOINT_KEY"])\nresult = client.invoke(json={"data": [1, 2, 3]})\nprint(result.status, result.deployment, result.json())`;
  const snippet = (id, label, text) => h("div", {}, h("div", { class: "row" }, h("strong", {}, label),
    h("button", { onclick: () => copyText(text).then(() => toast(`${label} snippet copied`)) }, "Copy")), h("pre", { id }, text));
  panels.push(h("div", { class: "panel" }, h("h2", { style: "margin-top:0" }, "Consumption"),
    h("p", { class: "muted" }, `Set ENDPOINT_KEY to a key (endpoints get-credentials ${ep.name}).`),
    snippet("snippet-curl", "curl", curl), snippet("snippet-python", "Python SDK", python)));
  content.replaceChildren(...panels);
}

async function logsTab(content, ep) {
  const { logs } = await api("GET", `/api/endpoints/${enc(ep.name)}/logs`);
  const pick = h("select", { id: "log-name" }, logs.map((n) => h("option", { value: n }, n)));
  const tail = h("select", { id: "log-tail" }, [50, 200, 1000].map((n) => h("option", { value: n, selected: n === 200 }, `last ${n} lines`)));
  const follow = h("input", { type: "checkbox", id: "log-follow" });
  const out = h("pre", { id: "log-text", style: "min-height:360px" });
  const state = h("span", { class: "muted", id: "log-state" });
  let offset = 0, loads = 0;
  function append(text) {
    const atBottom = out.scrollTop + out.clientHeight >= out.scrollHeight - 20;
    out.textContent += text;
    if (out.textContent.length > 400000) out.textContent = out.textContent.slice(-300000);
    if (atBottom) out.scrollTop = out.scrollHeight;
  }
  async function load() {
    streams.forEach((s) => s.close());
    streams = [];
    if (!pick.value) { out.textContent = "No logs yet."; return; }
    const mine = ++loads;
    const r = await api("GET", `/api/endpoints/${enc(ep.name)}/logs/${enc(pick.value)}?tail=${tail.value}`);
    if (mine !== loads) return; // another log was picked meanwhile: its load wins
    out.textContent = r.text ? r.text + "\n" : "";
    out.scrollTop = out.scrollHeight;
    offset = r.offset;
    state.textContent = "";
    if (follow.checked) {
      // The offset is a byte offset locally, an opaque cursor over a cluster stack: handed back as it came.
      const source = new EventSource(`/api/endpoints/${enc(ep.name)}/logs/${enc(pick.value)}/follow?offset=${enc(offset)}`);
      source.onopen = () => { state.textContent = "following…"; };
      source.onmessage = (m) => { const d = JSON.parse(m.data); offset = d.offset; append(d.text); };
      source.onerror = () => { state.textContent = "reconnecting…"; };
      streams.push(source);
    }
  }
  pick.addEventListener("change", load);
  tail.addEventListener("change", load);
  follow.addEventListener("change", load);
  content.replaceChildren(h("div", { class: "row" }, h("label", {}, "Log ", pick), tail,
    h("label", {}, follow, " Follow"), h("button", { onclick: load }, "Refresh"), state), out);
  await load();
}

// ------------------------------------------------------------------------------------------------ charts
function lineChart(title, unit, series, windowS) {
  const W = 560, H = 220, L = 48, R = 10, T = 10, B = 24;
  const now = Date.now() / 1000, t0 = now - windowS;
  const all = series.flatMap((s) => s.points.filter((p) => p[0] >= t0 && p[1] !== null).map((p) => p[1]));
  let max = Math.max(1e-9, ...all);
  const mag = Math.pow(10, Math.floor(Math.log10(max)));
  max = Math.ceil(max / mag) * mag || 1;
  const x = (t) => L + ((t - t0) / windowS) * (W - L - R);
  const y = (v) => T + (1 - v / max) * (H - T - B);
  const grid = [0, 0.25, 0.5, 0.75, 1].map((f) => [
    svg("line", { x1: L, x2: W - R, y1: y(max * f), y2: y(max * f), stroke: "#eaecf0" }),
    svg("text", { x: L - 6, y: y(max * f) + 4, "text-anchor": "end" }, fmt(max * f, max < 10 ? 2 : max < 100 ? 1 : 0)),
  ]);
  const ticks = [0, 0.5, 1].map((f) => svg("text", { x: L + f * (W - L - R), y: H - 6, "text-anchor": f === 0 ? "start" : f === 1 ? "end" : "middle" },
    f === 1 ? "now" : `-${Number(((1 - f) * windowS / 60).toFixed(1))} min`));
  const lines = series.map((s) => {
    const pts = s.points.filter((p) => p[0] >= t0 && p[1] !== null).map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`);
    return svg("polyline", { points: pts.join(" "), fill: "none", stroke: s.color, "stroke-width": 2, "stroke-dasharray": s.dash || "", "data-series": s.name, "data-points": pts.length });
  });
  const chart = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img", "aria-label": title },
    grid, ticks, svg("line", { x1: L, x2: L, y1: T, y2: H - B, stroke: "#98a2b3" }), lines);
  const legend = h("div", { class: "legend" }, series.map((s) => h("span", {},
    svg("svg", { width: 18, height: 6 }, svg("line", { x1: 0, x2: 18, y1: 3, y2: 3, stroke: s.color, "stroke-width": 2, "stroke-dasharray": s.dash || "" })), " ", s.name)));
  return h("div", { class: "panel chart-panel", "data-title": title }, h("h2", { style: "margin-top:0" }, `${title} (${unit})`), chart, legend);
}

async function metricsTab(content, ep, names) {
  const win = h("select", { id: "metrics-window" }, [[300, "last 5 minutes"], [600, "last 10 minutes"]].map(([v, l]) => h("option", { value: v }, l)));
  const charts = h("div", { class: "charts", id: "charts" });
  const note = h("p", { class: "muted", id: "metrics-note" });
  async function draw() {
    const m = await api("GET", `/api/endpoints/${enc(ep.name)}/metrics`);
    const windowS = Number(win.value);
    const deps = Object.keys(m.deployments).sort();
    note.textContent = m.source === "studio" && !deps.length ? "Collecting: the first points appear after two samples." : (m.note || "");
    const pts = (d, f) => m.deployments[d].map((p) => [p.t, f(p)]);
    const rps = deps.map((d) => ({ name: d, color: colorOf(names, d), points: pts(d, (p) => p.rps) }));
    const lat = deps.flatMap((d) => [
      { name: `${d} p50`, color: colorOf(names, d), points: pts(d, (p) => p.p50_ms) },
      { name: `${d} p99`, color: colorOf(names, d), dash: "5 3", points: pts(d, (p) => p.p99_ms) }]);
    const classes = ["2xx", "4xx", "5xx"];
    const dashes = { "2xx": "", "4xx": "5 3", "5xx": "2 2" };
    // A class shows once any deployment answered with it (2xx always): fewer lines that are flat at zero.
    const seen = classes.filter((c) => c === "2xx" || deps.some((d) => m.deployments[d].some((p) => (p.by_class[c] || 0) > 0)));
    const status = deps.flatMap((d) => seen.map((c) => ({ name: `${d} ${c}`, color: colorOf(names, d), dash: dashes[c],
      points: pts(d, (p) => p.by_class[c] || 0) })));
    charts.replaceChildren(lineChart("Requests per second", "req/s", rps, windowS),
      lineChart("Latency p50 / p99", "ms", lat, windowS),
      lineChart("Responses by status class", "req/s", status, windowS));
  }
  win.addEventListener("change", draw);
  content.replaceChildren(h("div", { class: "row" }, win), note, charts);
  await draw();
  every(2000, () => draw().catch(() => {}));
}

// ------------------------------------------------------------------------------------------------ batch
const TERMINAL = ["Completed", "Failed", "Canceled"];

async function batchPage(name) {
  crumbs(h("a", { href: "#/" }, "Endpoints"), h("span", {}, name));
  const ep = await api("GET", `/api/batch/${enc(name)}`);
  const jobs = h("tbody");
  const detail = h("div", { id: "job-detail" });
  let open = null;
  let logsFor = null, logsFinal = false;
  const logs = h("div", { id: "job-logs" });
  const input = h("input", { type: "text", id: "job-input", style: "width:420px",
    placeholder: ep.stack ? "a folder, file or glob inside the runner pods, or a URI" : "/path/to/folder, file, glob or URI" });
  const dep = h("select", { id: "job-deployment" }, h("option", { value: "" }, `default (${ep.default_deployment || "none"})`),
    ep.deployments.map((d) => h("option", { value: d }, d)));
  const mbs = h("input", { type: "number", id: "job-mini-batch-size", min: 1, placeholder: "spec" });
  const jobId = h("input", { type: "text", id: "job-id", placeholder: "auto" });
  const error = h("p", { class: "error", id: "job-error" });
  const submit = h("button", { class: "primary", id: "job-submit", onclick: async () => {
    error.textContent = "";
    const body = { input: input.value.trim(), settings: {} };
    if (dep.value) body.deployment = dep.value;
    if (jobId.value.trim()) body.job_id = jobId.value.trim();
    if (mbs.value) body.settings.mini_batch_size = Number(mbs.value);
    try {
      const job = await api("POST", `/api/batch/${enc(name)}/jobs`, body);
      toast(`Job ${job.id} submitted`);
      open = job.id;
      await refresh();
    } catch (e) { error.textContent = e.message; }
  } }, "Invoke");

  function progress(job) {
    const p = job.progress || {};
    if (p.total === undefined && p.instances) {  // a cluster job whose runners' journal the job API cannot read
      const pct = Math.round((100 * (p.instances_done || 0)) / p.instances);
      return h("span", {}, h("span", { class: "progress" }, h("div", { style: `width:${pct}%` })),
        ` ${p.instances_done || 0}/${p.instances} instances`);
    }
    const total = p.total || 0, done = p.done || 0;
    const pct = total ? Math.round((100 * done) / total) : (job.status === "Completed" ? 100 : 0);
    return h("span", {}, h("span", { class: "progress" }, h("div", { style: `width:${pct}%` })),
      ` ${done}/${total || "?"} mini-batches · ${p.rows || 0} rows`,
      job.status === "Running" && p.rows_per_second ? ` · ${fmt(p.rows_per_second, 1)} rows/s` : "",
      job.status === "Running" && p.eta_seconds != null ? ` · ETA ${Math.round(p.eta_seconds)} s` : "");
  }
  function showDetail(job) {
    const failures = (job.counts && job.counts.failures) || [];
    detail.replaceChildren(h("div", { class: "panel", "data-job": job.id },
      h("h2", { style: "margin-top:0" }, `Job ${job.id} `, badge(job.status)),
      h("dl", { class: "grid" },
        h("dt", {}, "Input"), h("dd", { class: "mono" }, job.input),
        h("dt", {}, "Output"), h("dd", { class: "mono" }, `${job.output}/${job.output_file_name}`),
        h("dt", {}, "Items"), h("dd", {}, job.counts && job.counts.items ? `${job.counts.items.succeeded} succeeded, ${job.counts.items.failed} failed` : "–"),
        h("dt", {}, "Error"), h("dd", { class: "error" }, job.error || "–")),
      h("h2", {}, `Failed mini-batches (${failures.length})`),
      failures.length ? h("table", { id: "job-failures" }, h("thead", {}, h("tr", {}, ["Mini-batch", "Failed items", "Attempts", "Reason"].map((t) => h("th", {}, t)))),
        h("tbody", {}, failures.map((f) => h("tr", {}, h("td", {}, f.mini_batch), h("td", {}, f.failed_items), h("td", {}, f.attempts), h("td", { class: "mono" }, f.reason)))))
        : h("p", { class: "muted" }, "None."),
      h("h2", {}, "Runner logs"), logs));
    if (logsFor !== job.id || !TERMINAL.includes(job.status) || !logsFinal) {
      logsFor = job.id;
      logsFinal = TERMINAL.includes(job.status);
      api("GET", `/api/batch/${enc(name)}/jobs/${enc(job.id)}/logs`).then((r) => {
        logs.replaceChildren(...Object.entries(r.logs).map(([instance, text]) =>
          h("div", {}, h("strong", {}, instance), h("pre", { class: "job-log", "data-instance": instance }, text || "(empty)"))));
        if (!Object.keys(r.logs).length) logs.replaceChildren(h("p", { class: "muted" }, "No runner has started yet."));
      }).catch(() => {});
    }
  }
  async function refresh() {
    const data = await api("GET", `/api/batch/${enc(name)}`);
    jobs.replaceChildren(...data.jobs.map((job) => h("tr", { "data-job": job.id, "data-status": job.status },
      h("td", {}, h("button", { class: "link", onclick: () => { open = job.id; showDetail(job); } }, job.id)),
      h("td", {}, badge(job.status)),
      h("td", {}, job.deployment),
      h("td", {}, progress(job)),
      h("td", {}, when(job.created)),
      h("td", {},
        TERMINAL.includes(job.status) ? null : h("button", { class: "danger", onclick: async () => {
          try { await api("POST", `/api/batch/${enc(name)}/jobs/${enc(job.id)}/cancel`); toast(`Job ${job.id} canceled`); } catch (e) { toast(e.message); }
          await refresh();
        } }, "Cancel"), " ",
        job.status === "Queued" ? null : h("a", { class: "button", href: `/api/batch/${enc(name)}/jobs/${enc(job.id)}/output`, download: "" }, "Download output")),
    )));
    if (!data.jobs.length) jobs.append(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No jobs yet.")));
    const current = data.jobs.find((j) => j.id === open);
    if (current) showDetail(current);
  }
  main.replaceChildren(
    h("h1", {}, name, badge(ep.state), h("span", { class: "muted" }, `batch · ${ep.deployment_count} deployment(s)`)),
    h("div", { class: "panel" }, h("h2", { style: "margin-top:0" }, "Invoke a job"),
      h("div", { class: "row" }, h("label", {}, "Input ", input), h("label", {}, "Deployment ", dep)),
      h("div", { class: "row" }, h("label", {}, "Mini-batch size ", mbs), h("label", {}, "Job id ", jobId), submit),
      error),
    h("h2", {}, "Jobs"),
    h("table", { id: "jobs" }, h("thead", {}, h("tr", {}, ["Job", "Status", "Deployment", "Progress", "Created", ""].map((t) => h("th", {}, t)))), jobs),
    detail,
  );
  await refresh();
  every(1000, () => refresh().catch(() => {}));
}
