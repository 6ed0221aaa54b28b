// The explorer page. Every number shown comes from the server (minicnn/explore/server.py),
// which computes it with the command line's own functions; this file only asks and draws.
// All addresses are relative, so they carry the session's token (/<token>/api/...).
"use strict";

const $ = (id) => document.getElementById(id);

// What is chosen now, and the last answers drawn.
const state = {
  info: null, network: null, image: null, method: "gradient", target: null, layer: null,
  options: {},            // {method: {option: value}} as the page's inputs hold them
  classify: null, explain: null, trace: null, lut: {},
  traced: null,           // what the last trace asked for: {method, rule}, as JSON
};

// The page's state for a test driver (and the curious): the map's raw values, timings.
const explorer = window.minicnnExplorer = {
  ready: false, busy: 0, explained: 0, traced: 0, error: null, map: null, answer: null,
  ledger: null, timings: [], loadMs: null,
};

// Answers arrive out of order when the user clicks fast: each kind of request carries a
// generation number, and an answer whose generation is not the latest is dropped.
const generation = { classify: 0, explain: 0, trace: 0 };

// ---------------------------------------------------------------------------- talking

async function api(path, params, init) {
  const query = params ? "?" + new URLSearchParams(params) : "";
  explorer.busy += 1;
  showStatus();
  try {
    const response = await fetch(path + query, init);
    let body;
    try { body = await response.json(); } catch (e) { body = {}; }
    if (!response.ok) throw new Error(body.error || `minicnn: error: HTTP ${response.status}`);
    return body;
  } finally {
    explorer.busy -= 1;
    showStatus();
  }
}

// An array from the server: {shape, dtype, data: base64 of little-endian bytes}.
function decode(a) {
  if (!a) return null;
  const raw = atob(a.data);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  const kinds = { float32: Float32Array, uint8: Uint8Array, float64: Float64Array };
  return { shape: a.shape, values: new kinds[a.dtype](bytes.buffer) };
}

function showError(message) {
  explorer.error = message || null;
  $("error").textContent = message || "";
  $("error").hidden = !message;
}

let lastStatus = "";
function showStatus(text) {
  if (text !== undefined) lastStatus = text;
  $("status").textContent = explorer.busy ? "computing\u2026" : lastStatus;
}

// ---------------------------------------------------------------------------- drawing

const fmt = (v) => (v === null || v === undefined || Number.isNaN(v)) ? "-" :
  (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0)) ? v.toExponential(3) : v.toPrecision(4);

// Values (n) -> RGBA through a colormap's 256 colours, lo..hi.
function colour(values, lo, hi, lut) {
  const out = new Uint8ClampedArray(values.length * 4);
  const span = hi > lo ? hi - lo : 1;
  for (let i = 0; i < values.length; i++) {
    const k = Math.max(0, Math.min(255, Math.round((values[i] - lo) / span * 255)));
    out[4 * i] = lut[3 * k]; out[4 * i + 1] = lut[3 * k + 1]; out[4 * i + 2] = lut[3 * k + 2];
    out[4 * i + 3] = 255;
  }
  return out;
}

function rgbaOf(pixels) {                       // uint8 (H, W, 3) -> RGBA
  const n = pixels.length / 3, out = new Uint8ClampedArray(n * 4);
  for (let i = 0; i < n; i++) {
    out[4 * i] = pixels[3 * i]; out[4 * i + 1] = pixels[3 * i + 1];
    out[4 * i + 2] = pixels[3 * i + 2]; out[4 * i + 3] = 255;
  }
  return out;
}

function bitmap(width, height, rgba) {          // an offscreen canvas at the data's size
  const c = document.createElement("canvas");
  c.width = width; c.height = height;
  c.getContext("2d").putImageData(new ImageData(rgba, width, height), 0, 0);
  return c;
}

// Draw layers of offscreen bitmaps on a view, each input pixel a square block: the view's
// own resolution is a whole multiple of the data's, so the box lines stay thin and sharp.
function paint(canvas, width, height, layers, box, trueBox) {
  const k = Math.max(1, Math.floor(448 / Math.max(width, height)));
  canvas.width = width * k; canvas.height = height * k;
  canvas.dataset.width = width; canvas.dataset.height = height;
  const g = canvas.getContext("2d");
  g.imageSmoothingEnabled = false;
  g.clearRect(0, 0, canvas.width, canvas.height);
  for (const [image, alpha] of layers) {
    g.globalAlpha = alpha;
    g.drawImage(image, 0, 0, canvas.width, canvas.height);
  }
  g.globalAlpha = 1;
  const frame = (b, colourName, dash) => {
    if (!b) return;
    g.setLineDash(dash); g.strokeStyle = colourName; g.lineWidth = 2;
    g.strokeRect(b[0] * k + 1, b[1] * k + 1, (b[2] - b[0]) * k - 2, (b[3] - b[1]) * k - 2);
  };
  frame(trueBox, "lime", [6, 4]);
  frame(box, "cyan", []);
  g.setLineDash([]);
}

function colourbar(canvas, lut, lo, hi) {
  canvas.width = 256; canvas.height = 22;
  const g = canvas.getContext("2d");
  for (let k = 0; k < 256; k++) {
    g.fillStyle = `rgb(${lut[3 * k]},${lut[3 * k + 1]},${lut[3 * k + 2]})`;
    g.fillRect(k, 0, 1, 10);
  }
  g.fillStyle = "#444"; g.font = "10px system-ui, sans-serif";
  g.textAlign = "left"; g.fillText(fmt(lo), 0, 21);
  g.textAlign = "right"; g.fillText(fmt(hi), 256, 21);
  if (lo < 0 && hi > 0) { g.textAlign = "center"; g.fillText("0", 128, 21); }
}

const maxOf = (v) => v.reduce((m, x) => (x > m ? x : m), -Infinity);
const maxAbs = (v) => v.reduce((m, x) => (Math.abs(x) > m ? Math.abs(x) : m), 0);

function drawInput() {
  const c = state.classify;
  if (!c) return;
  const [H, W] = c.pixels.shape;
  const trueBox = c.true ? c.true.box : null;
  paint($("input-view"), W, H, [[bitmap(W, H, rgbaOf(c.pixels.values)), 1]], null, trueBox);
  $("truth").textContent = c.true ? `(true class: ${c.true.name}, green box)` : "";
}

function drawMaps() {
  const c = state.classify, e = state.explain;
  if (!c || !e) return;
  const [H, W] = e.map.shape;
  const lut = state.lut;
  const hi = maxOf(e.map.values);
  const mapped = bitmap(W, H, colour(e.map.values, 0, hi, lut.map));
  paint($("map-view"), W, H, [[mapped, 1]], null, null);
  colourbar($("map-bar"), lut.map, 0, hi);
  const words = methodWords(e.method);
  $("map-caption").textContent = e.coarse ?
    `${words}, upsampled bilinearly to the input (the map the command line writes)` :
    `M = max over colour channels of |${words}| (the paper's map for the gradient)`;
  if (e.coarse) {                                  // Grad-CAM: its own grid in this panel
    const [h, w] = e.coarse.shape, top = maxOf(e.coarse.values);
    paint($("signed-view"), w, h, [[bitmap(w, h, colour(e.coarse.values, 0, top, lut.map)), 1]]);
    colourbar($("signed-bar"), lut.map, 0, top);
    $("signed-caption").textContent = `Grad-CAM at ${e.layer}, on its own ${w}x${h} grid: ` +
      "ReLU(sum over channels k of alpha_k A^k)";
  } else {
    const a = maxAbs(e.signed.values) || 1;
    paint($("signed-view"), W, H, [[bitmap(W, H, colour(e.signed.values, -a, a, lut.signed)), 1]]);
    colourbar($("signed-bar"), lut.signed, -a, a);
    $("signed-caption").textContent = `signed ${words}, summed over channels: red raises ` +
      "the score, blue lowers it";
  }
  state.mapBitmap = mapped;
  drawOverlay();
}

function drawOverlay() {
  const c = state.classify, e = state.explain;
  if (!c || !e || !state.mapBitmap) return;
  const [H, W] = c.pixels.shape;
  const alpha = Number($("opacity").value) / 100;
  const showBox = $("show-box").checked;
  paint($("overlay-view"), W, H,
        [[bitmap(W, H, rgbaOf(c.pixels.values)), 1], [state.mapBitmap, alpha]],
        showBox ? e.box : null, showBox && c.true ? c.true.box : null);
  $("box-caption").textContent = !showBox ? "" : e.box ?
    `cyan: the pixels in the map's top 10%, their largest connected part (paper §3.1)` +
    (c.true ? "; green: where the object truly is" : "") : "no box: the map is zero";
}

function methodWords(name) {
  const words = { gradient: "dS_c/dI", guided_backprop: "guided backprop",
    deconvnet: "deconvnet signal", input_x_gradient: "I x dS_c/dI", smoothgrad: "SmoothGrad",
    integrated_gradients: "integrated gradients", grad_cam: "Grad-CAM",
    guided_grad_cam: "guided Grad-CAM", occlusion: "occlusion's score drop",
    lrp: "LRP relevance", deeplift: "DeepLIFT attribution" };
  return words[name] || name.replace(/_/g, " ");
}

// A vector (a dense layer's output) is drawn as a square grid of its values, row by row.
function asGrid(step, values) {
  if (step.shape.length >= 3) {
    const s = step.shape;
    return { w: s[s.length - 1], h: s[s.length - 2], values };
  }
  const n = values.length, w = Math.ceil(Math.sqrt(n)), h = Math.ceil(n / w);
  const padded = new Float32Array(w * h);
  padded.set(values);
  return { w, h, values: padded };
}

function drawTrace() {
  const t = state.trace;
  if (!t) return;
  const lrp = t.method === "lrp";
  for (const e of document.querySelectorAll(".gradient-trace")) e.hidden = lrp;
  for (const e of document.querySelectorAll(".lrp-trace")) e.hidden = !lrp;
  const k = Number($("trace-step").value), step = t.steps[k];
  const g = asGrid(step, step.gradient.values);
  // relevance keeps its sign (red for the class, blue against); |gradient| runs from 0
  const m = maxAbs(g.values) || 1;
  const [lo, hi, lut] = lrp ? [-m, m, state.lut.signed] : [0, maxOf(g.values), state.lut.map];
  paint($("trace-gradient"), g.w, g.h, [[bitmap(g.w, g.h, colour(g.values, lo, hi, lut)), 1]]);
  colourbar($("trace-bar"), lut, lo, hi);
  $("trace-gradient-caption").textContent = lrp ?
    `relevance at the output, summed over channels (${t.rule}): red for the class, blue against` :
    "|dS_c/d(output)|, summed over channels";
  const isInput = k === t.steps.length - 1;
  if (isInput && state.classify) {             // the pixels themselves
    const [H, W] = state.classify.pixels.shape;
    paint($("trace-activation"), W, H, [[bitmap(W, H, rgbaOf(state.classify.pixels.values)), 1]]);
  } else {
    const a = asGrid(step, step.activation.values);
    paint($("trace-activation"), a.w, a.h,
          [[bitmap(a.w, a.h, colour(a.values, 0, maxOf(a.values), state.lut.map)), 1]]);
  }
  $("trace-activation-caption").textContent = isInput ? "the input (what the network saw)" :
    "the layer's output, |.| summed over channels";
  let where;
  if (lrp) {
    const score = t.steps[0].total, left = `relevance here totals ${fmt(step.total)}`;
    where = k === 0 ? `the scores: relevance starts as the score S_c = ${fmt(score)} on the class` :
      isInput ? `the pixels: the LRP map; ${left} of the score's ${fmt(score)}` :
      `the output of ${step.name}: ${left} of the score's ${fmt(score)}`;
  } else {
    where = k === 0 ? "the scores: the one-hot dS_c/dS that starts the backward pass" :
      isInput ? "the pixels: dS_c/dI, the saliency gradient" : `the output of ${step.name}`;
  }
  const shape = `(${step.shape.join(", ")})`;
  const vector = step.shape.length < 3 ? `; a vector of ${step.shape[0]}, drawn row by row` : "";
  $("trace-caption").textContent =
    `step ${k + 1} of ${t.steps.length}: ${where}; shape ${shape}${vector}`;
}

// LRP's ledger (explorer.py _ledger): {columns: [{key, label, about}], rows: [[...]] (a node
// per row, from the score back to the input), totals: {score, input, bias, stabiliser,
// batchnorm, residual}}; null hides the panel.
function renderLedger(ledger, e) {
  const section = $("ledger"), table = $("ledger-table");
  explorer.ledger = ledger || null;
  section.hidden = !ledger;
  table.textContent = "";
  $("ledger-about").textContent = "";
  if (!ledger) return;
  const text = new Set(["name", "layer", "rule"]);
  const num = (v) => (v === 0 ? "0" : fmt(v));      // most layers take nothing: exactly 0
  const cellOf = (row, value, key) => {
    const td = row.insertCell();
    td.textContent = value === null ? "" : typeof value === "number" ? num(value) : value;
    if (text.has(key)) td.className = "text";
    if (typeof value === "number") td.title = String(value);     // every digit, on hovering
    return td;
  };
  const head = table.createTHead().insertRow();
  for (const c of ledger.columns) {
    const th = head.appendChild(document.createElement("th"));
    th.textContent = c.label; th.title = c.about;
    if (text.has(c.key)) th.className = "text";
  }
  const body = table.createTBody();
  ledger.rows.forEach((cells, i) => {
    const row = body.insertRow();
    cells.forEach((v, j) => {
      const td = cellOf(row, v, ledger.columns[j].key);
      if (ledger.columns[j].key === "relevance_out" && (i === 0 || i === ledger.rows.length - 1)) {
        td.classList.add("total");               // the score, and what reached the pixels
      }
    });
  });
  const totals = ledger.totals, foot = table.createTFoot().insertRow();
  for (const c of ledger.columns) {
    // the absorbed columns and the residual summed (totals has no key of the other columns)
    cellOf(foot, c.key === "name" ? "summed over the nodes" : c.key in totals ? totals[c.key] : "",
           c.key);
  }
  $("ledger-sum").textContent = `${e.rule}, explaining ${e.target_name}: the score ` +
    `S_c = ${num(totals.score)} (top row) = ${num(totals.input)} reaching the pixels ` +
    `(bottom row) + ${num(totals.bias)} taken by biases + ${num(totals.stabiliser)} by ` +
    `stabilisers + ${num(totals.batchnorm)} by BatchNorms + residual ${num(totals.residual)}`;
  for (const c of ledger.columns) {              // what each column is, under the table
    const item = $("ledger-about").appendChild(document.createElement("div"));
    item.appendChild(document.createElement("dt")).textContent = c.label;
    item.appendChild(document.createElement("dd")).textContent = c.about;
  }
}

// ---------------------------------------------------------------------------- hovering

function hover(event) {
  const canvas = event.currentTarget, c = state.classify, e = state.explain;
  if (!c || !canvas.dataset.width) return;
  const w = Number(canvas.dataset.width), h = Number(canvas.dataset.height);
  const rect = canvas.getBoundingClientRect();
  const x = Math.floor((event.clientX - rect.left) / rect.width * w);
  const y = Math.floor((event.clientY - rect.top) / rect.height * h);
  if (x < 0 || y < 0 || x >= w || y >= h) return;
  const [H, W] = c.pixels.shape;
  const parts = [];
  if (canvas.id.startsWith("trace-")) {
    if (!state.trace) return;
    const step = state.trace.steps[Number($("trace-step").value)];
    const g = asGrid(step, step.gradient.values), a = asGrid(step, step.activation.values);
    if (x >= g.w || y >= g.h) return;
    const what = state.trace.method === "lrp" ? "relevance" : "|gradient|";
    parts.push(`${step.name} at (${x}, ${y}): ${what} summed over channels ` +
               `${fmt(g.values[y * g.w + x])}, |output| summed ${fmt(a.values[y * a.w + x])}`);
  } else if (canvas.id === "signed-view" && e && e.coarse) {
    parts.push(`Grad-CAM cell (${x}, ${y}) of its ${w}x${h} grid = ${fmt(e.coarse.values[y * w + x])}`);
  } else if (w === W && h === H) {
    const i = y * W + x, p = c.pixels.values;
    const rgb = [p[3 * i], p[3 * i + 1], p[3 * i + 2]];
    const xin = rgb.map((v, ch) => (v / 255 - c.mean[ch]) / c.std[ch]);
    parts.push(`pixel (${x}, ${y}): RGB (${rgb.join(", ")}), input x (${xin.map(fmt).join(", ")})`);
    if (e && e.attribution) {
      const a = e.attribution.values, n = H * W;
      parts.push(`${methodWords(e.method)} per channel (R ${fmt(a[i])}, G ${fmt(a[n + i])}, ` +
                 `B ${fmt(a[2 * n + i])}), summed ${fmt(e.signed.values[i])}`);
    }
    if (e) parts.push(`map M = ${fmt(e.map.values[i])}`);
  }
  $("readout").textContent = parts.join(" \u00b7 ");
}

// ---------------------------------------------------------------------------- the controls

function fillSelect(select, items, chosen) {
  select.textContent = "";
  const groups = {};
  for (const item of items) {
    let parent = select;
    if (item.group) {
      if (!groups[item.group]) {
        groups[item.group] = select.appendChild(document.createElement("optgroup"));
        groups[item.group].label = item.group;
      }
      parent = groups[item.group];
    }
    const option = parent.appendChild(document.createElement("option"));
    option.value = item.value; option.textContent = item.label;
    option.disabled = !!item.disabled;
    if (item.title) option.title = item.title;
  }
  if (chosen !== undefined && chosen !== null) select.value = chosen;
}

const IMAGE_GROUPS = { sample: "shipped samples", named: "named on the command line",
                       uploaded: "dropped here" };
const NETWORK_GROUPS = { shipped: "shipped", named: "named on the command line",
                         fetched: "ImageNet (minicnn fetch NAME)" };

function fillImages() {
  fillSelect($("image"), state.info.images.map((i) => ({
    value: i.id, label: i.label, group: IMAGE_GROUPS[i.group] })), state.image);
}

function fillNetworks() {
  fillSelect($("network"), state.info.networks.map((n) => ({
    value: n.id, label: n.available ? n.label : `${n.label} (not fetched)`,
    group: NETWORK_GROUPS[n.kind], disabled: !n.available, title: n.note })), state.network);
}

function fillMethods() {
  fillSelect($("method"), state.info.methods.map((m) => ({ value: m.name, label: m.name })),
             state.method);
  fillOptions();
}

function currentMethod() {
  return state.info.methods.find((m) => m.name === state.method);
}

function fillOptions() {
  const m = currentMethod(), box = $("options");
  $("method-summary").textContent = m.summary;
  box.textContent = "";
  const values = state.options[m.name] || (state.options[m.name] = {});
  for (const o of m.options) {
    const label = box.appendChild(document.createElement("label"));
    label.append(o.name + " ");
    let input;
    if (o.kind === "choice") {
      input = document.createElement("select");
      for (const choice of o.choices) {
        const option = input.appendChild(document.createElement("option"));
        option.value = option.textContent = choice;
      }
    } else {
      input = document.createElement("input");
      input.type = "number"; input.min = o.low; input.max = o.high;
      input.step = o.kind === "int" ? 1 : "any";
    }
    input.name = o.name;
    input.value = values[o.name] !== undefined ? values[o.name] : o.default;
    input.addEventListener("change", () => {
      values[o.name] = input.value;
      explain("option");
      if (traceOutdated()) trace();             // LRP's rule: the relevance trace follows it
    });
    label.appendChild(input);
  }
  $("layer-row").hidden = !m.layer;
}

// What the trace follows: LRP's relevance, by the page's rule, when the method is LRP; the
// gradient for every other method.
function traceKind() {
  if (state.method !== "lrp") return { method: "gradient" };
  const chosen = (state.options.lrp || {}).rule;
  const rule = chosen !== undefined ? chosen :
    currentMethod().options.find((o) => o.name === "rule").default;
  return { method: "lrp", rule };
}

const traceOutdated = () => JSON.stringify(traceKind()) !== state.traced;

function fillLayers() {
  const c = state.classify;
  const layers = (c && c.layers) || [];
  if (!layers.includes(state.layer)) state.layer = c ? c.default_layer : null;
  fillSelect($("layer"), layers.map((name) => ({
    value: name, label: name === c.default_layer ? `${name} (default)` : name })), state.layer);
}

function fillClasses() {
  const c = state.classify;
  const list = $("top");
  list.textContent = "";
  for (const t of c.top) {
    const button = list.appendChild(document.createElement("li"))
      .appendChild(document.createElement("button"));
    button.type = "button";
    button.dataset.index = t.index;
    const mark = [t.index === c.predicted ? "predicted" : "",
                  c.true && t.index === c.true.index ? "true class" : ""].filter(Boolean);
    button.innerHTML = "";
    button.append(`${t.name}${mark.length ? " (" + mark.join(", ") + ")" : ""}`);
    const num = button.appendChild(document.createElement("div"));
    num.className = "num";
    num.textContent = `score ${fmt(t.score)} \u00b7 p = ${t.probability.toFixed(3)}`;
    button.addEventListener("click", () => chooseClass(t.index, "class"));
  }
  const datalist = $("class-list");
  datalist.textContent = "";
  for (const name of c.classes) datalist.appendChild(document.createElement("option")).value = name;
  markClass();
}

function markClass() {
  const chosen = state.explain ? state.explain.target : null;
  for (const b of $("top").querySelectorAll("button")) {
    b.classList.toggle("chosen", Number(b.dataset.index) === chosen);
  }
  if (state.explain && state.classify) {
    $("class-name").placeholder = `explaining: ${state.explain.target_name}; any class, by name`;
  }
}

function chooseClass(index, reason) {
  state.target = index;
  explain(reason);
  trace();
}

// ---------------------------------------------------------------------------- the requests

async function classify(reason) {
  const mine = ++generation.classify;
  const started = performance.now();
  try {
    const c = await api("api/classify", { network: state.network, image: state.image });
    if (mine !== generation.classify) return;
    c.pixels = decode(c.pixels);
    state.classify = c;
    state.target = null;                            // a new image: explain its prediction
    showError(null);
    $("warning").hidden = !c.warning;
    $("warning").textContent = c.warning ? `Warning: ${c.warning}` : "";
    $("notes").hidden = !c.notes.length;
    $("notes").textContent = c.notes.join(" ");
    fillLayers();
    fillClasses();
    drawInput();
    await Promise.all([explain(reason, started), trace()]);
  } catch (error) {
    if (mine === generation.classify) showError(error.message);
  }
}

async function explain(reason, started) {
  if (!state.classify) return;
  const mine = ++generation.explain;
  started = started || performance.now();
  const params = { network: state.network, image: state.image, method: state.method };
  if (state.target !== null) params.target = state.target;
  if (currentMethod().layer && state.layer) params.layer = state.layer;
  for (const [name, value] of Object.entries(state.options[state.method] || {})) {
    params["opt." + name] = value;
  }
  try {
    const e = await api("api/explain", params);
    if (mine !== generation.explain) return;
    for (const k of ["map", "signed", "attribution", "coarse"]) e[k] = decode(e[k]);
    state.explain = e;
    showError(null);
    drawMaps();
    markClass();
    renderLedger(e.ledger, e);
    await new Promise((done) => requestAnimationFrame(() => done()));   // drawn on screen
    const ms = performance.now() - started;
    explorer.map = { width: e.map.shape[1], height: e.map.shape[0], values: e.map.values };
    explorer.answer = { network: state.network, image: state.image, method: e.method,
                        target: e.target, layer: e.layer, forward: e.forward };
    explorer.timings.push({ reason, method: e.method, network: state.network, ms,
                            server_ms: e.seconds * 1000, forward: e.forward });
    explorer.explained += 1;
    showStatus(`${e.method} for ${e.target_name}: drawn ${Math.round(ms)} ms after the ` +
               `${reason === "load" ? "page asked" : "click"} (server ${Math.round(e.seconds * 1000)} ms; ` +
               `forward pass ${e.forward})`);
    if (!explorer.ready) { explorer.ready = true; explorer.loadMs = performance.now(); }
  } catch (error) {
    if (mine === generation.explain) showError(error.message);
  }
}

async function trace() {
  if (!state.classify) return;
  const mine = ++generation.trace;
  const kind = traceKind();
  state.traced = JSON.stringify(kind);
  const params = { network: state.network, image: state.image, ...kind };
  if (state.target !== null) params.target = state.target;
  try {
    const t = await api("api/trace", params);
    if (mine !== generation.trace) return;
    for (const step of t.steps) {
      step.gradient = decode(step.gradient); step.activation = decode(step.activation);
    }
    state.trace = t;
    const slider = $("trace-step");
    const keep = Math.min(Number(slider.value), t.steps.length - 1);
    slider.max = t.steps.length - 1;
    slider.value = Number(slider.max) === 0 ? 0 : keep;
    drawTrace();
    explorer.traced += 1;
  } catch (error) {
    if (mine === generation.trace) showError(error.message);
  }
}

async function upload(file) {
  const limit = state.info.limits.upload_bytes;
  if (file.size > limit) {       // the server refuses it too; no need to send it
    showError(`minicnn: error: ${file.name}: ${file.size.toLocaleString("en")} bytes, more ` +
              `than the upload limit of ${limit.toLocaleString("en")}`);
    return;
  }
  try {
    const answer = await api("api/upload", null, {
      method: "POST", body: file,
      headers: { "Content-Type": "application/octet-stream",
                 "X-File-Name": encodeURIComponent(file.name) } });
    if (!state.info.images.some((i) => i.id === answer.id)) {
      state.info.images.push({ id: answer.id, label: answer.label, group: "uploaded" });
    }
    state.image = answer.id;
    fillImages();
    await classify("upload");
  } catch (error) {
    showError(error.message);
  }
}

// ---------------------------------------------------------------------------- start

function wire() {
  $("image").addEventListener("change", () => { state.image = $("image").value; classify("image"); });
  $("network").addEventListener("change", () => {
    state.network = $("network").value;
    state.layer = null;                     // layer names mean nothing across networks
    classify("network");
  });
  $("method").addEventListener("change", () => {
    state.method = $("method").value; fillOptions(); explain("method");
    if (traceOutdated()) trace();             // to or from LRP: relevance or the gradient
  });
  $("layer").addEventListener("change", () => { state.layer = $("layer").value; explain("layer"); });
  $("opacity").addEventListener("input", drawOverlay);
  $("show-box").addEventListener("change", drawOverlay);
  $("trace-step").addEventListener("input", drawTrace);
  $("class-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("class-name").value.trim().toLowerCase();
    const names = state.classify ? state.classify.classes : [];
    const index = names.findIndex((n) => n.toLowerCase() === text);
    if (index < 0) {
      showError(`minicnn: error: unknown class '${$("class-name").value}': choose a name ` +
                "from the list");
      return;
    }
    chooseClass(index, "class");
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files.length) upload(event.dataTransfer.files[0]);
  });
  $("file").addEventListener("change", () => {
    if ($("file").files.length) upload($("file").files[0]);
    $("file").value = "";                   // the same file again fires a change again
  });
  for (const id of ["input-view", "map-view", "signed-view", "overlay-view", "trace-gradient",
                    "trace-activation"]) {
    $(id).addEventListener("mousemove", hover);
  }
}

async function start() {
  wire();
  try {
    const info = await api("api/info");
    state.info = info;
    for (const [kind, c] of Object.entries(info.colormaps)) state.lut[kind] = decode(c.lut).values;
    state.network = info.first.network;
    state.image = info.first.image;
    fillImages();
    fillNetworks();
    fillMethods();
    await classify("load");
  } catch (error) {
    showError(error.message);
  }
}

start();
