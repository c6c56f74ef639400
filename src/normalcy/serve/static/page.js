"use strict";
// The inspection page: list the served models, build an Open Inference Protocol v2 request
// from what the person drops or pastes, and draw what comes back. The request follows the
// model's metadata (its modality and inputs), so a new modality needs no change here unless
// it wants its own input widget. URLs are relative so the page works behind a path prefix.
(() => {
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const TOKEN_KEY = "normalcy.token";
  const MAX_TABLE_ROWS = 1000;
  const state = { model: "", meta: null, mode: "", imageFile: null, previewUrl: null };

  // --- talking to the server -----------------------------------------------------------
  async function api(path, body) {
    const headers = { Accept: "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    const init = { method: body === undefined ? "GET" : "POST", headers };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (e) {
      throw new Error(`the server did not answer (${e.message})`);
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      // not JSON: reported below with the raw text
    }
    if (!response.ok) {
      const message = data && typeof data.error === "string" ? data.error : text || response.statusText;
      const error = new Error(`${message} (HTTP ${response.status})`);
      error.status = response.status;
      throw error;
    }
    if (data === null) throw new Error(`the server's answer to ${path} is not JSON`);
    return data;
  }

  function showError(error) {
    const box = $("error");
    const title = document.createElement("strong");
    title.textContent = "Error: ";
    box.replaceChildren(title, error.message);
    if (error.status === 401) box.append(" Enter the server's access token at the top of the page.");
    box.hidden = false;
  }

  function clearError() {
    $("error").hidden = true;
    $("error").replaceChildren();
  }

  function setStatus(text) {
    $("status").textContent = text;
  }

  // --- models ----------------------------------------------------------------------------
  async function loadModels() {
    const select = $("model");
    select.disabled = true;
    clearError();
    let models;
    try {
      models = await api("v2/repository/index", {});
    } catch (e) {
      select.replaceChildren(new Option("no models listed", ""));
      $("infer-form").hidden = true;
      $("model-info").hidden = true;
      showError(e);
      return;
    }
    const ready = (m) => m.state === undefined || m.state === "READY";
    select.replaceChildren(...models.map((m) => {
      const option = new Option(ready(m) ? m.name : `${m.name} (${String(m.state).toLowerCase()})`, m.name);
      option.disabled = !ready(m);
      return option;
    }));
    if (!models.some(ready)) {
      select.append(new Option("no model is ready", "", true, true));
      return;
    }
    const keep = models.find((m) => m.name === state.model && ready(m));
    select.value = keep ? keep.name : models.find(ready).name;
    select.disabled = false;
    await selectModel(select.value);
  }

  function modeOf(meta) {
    const modality = (meta.parameters || {}).modality;
    const inputs = meta.inputs || [];
    if (modality === "image") return "image";
    if (modality === "timeseries") return "series";
    if (modality === "tabular" || modality === "events") return "csv";
    if (inputs.length === 1 && inputs[0].datatype === "BYTES") return "lines";
    return "csv";
  }

  async function selectModel(name) {
    clearError();
    hideResult();
    state.model = name;
    state.meta = null;
    $("infer-form").hidden = true;
    $("model-info").hidden = true;
    if (!name) return;
    let meta;
    try {
      meta = await api(`v2/models/${encodeURIComponent(name)}`);
    } catch (e) {
      showError(e);
      return;
    }
    if (state.model !== name) return; // another model was picked while this one loaded
    state.meta = meta;
    state.mode = modeOf(meta);
    showInfo(meta);
    for (const panel of document.querySelectorAll("[data-mode]")) panel.hidden = panel.dataset.mode !== state.mode;
    const inputs = meta.inputs || [];
    if (state.mode === "csv") {
      $("csv-columns").textContent = `Columns: ${inputs.map((i) => `${i.name} (${i.datatype})`).join(", ")}`;
      $("csv-text").placeholder = `${inputs.map((i) => i.name).join(",")}\n…`;
    }
    if (state.mode === "lines") {
      const what = meta.parameters && meta.parameters.modality === "logs" ? "Log lines" : "Texts";
      document.querySelector("label[for=lines-text]").textContent = `${what}, one per line`;
    }
    $("infer-form").hidden = false;
  }

  function showInfo(meta) {
    const params = meta.parameters || {};
    const rows = [
      ["Modality", params.modality || "unknown"],
      ["Detector", params.detector || "unknown"],
      ["Threshold", params.threshold === null || params.threshold === undefined ? "none: scores only, no labels" : fmt(params.threshold)],
      ["Inputs", (meta.inputs || []).map((i) => `${i.name} ${i.datatype} [${(i.shape || []).join(", ")}]`).join("; ")],
    ];
    $("model-info").replaceChildren(...rows.flatMap(([term, value]) => {
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = term;
      dd.textContent = value;
      return [dt, dd];
    }));
    $("model-info").hidden = false;
  }

  // --- building the request --------------------------------------------------------------
  async function buildRequest() {
    const inputs = state.meta.inputs || [];
    const first = inputs[0] || {};
    if (state.mode === "image") {
      if (!state.imageFile) throw new Error("choose or drop an image first");
      const data = await fileBase64(state.imageFile);
      const request = {
        inputs: [{ name: first.name || "image", shape: [1], datatype: "BYTES", data: [data] }],
        parameters: { overlay: true },
      };
      // The overlay shows the map; its raw tensor would only make the answer large.
      const wanted = (state.meta.outputs || []).filter((o) => o.name !== "anomaly_map");
      if (wanted.length) request.outputs = wanted.map((o) => ({ name: o.name }));
      return request;
    }
    if (state.mode === "series") return { inputs: [seriesInput($("series-text").value, first)] };
    if (state.mode === "lines") {
      const lines = $("lines-text").value.split(/\r?\n/).filter((l) => l.trim() !== "");
      if (!lines.length) throw new Error("paste at least one line first");
      return { inputs: [{ name: first.name || "lines", shape: [lines.length], datatype: "BYTES", data: lines }] };
    }
    return { inputs: csvInputs($("csv-text").value, inputs) };
  }

  function fileBase64(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(String(reader.result).replace(/^data:[^,]*,/, ""));
      reader.onerror = () => reject(new Error(`could not read ${file.name}`));
      reader.readAsDataURL(file);
    });
  }

  function seriesInput(text, spec) {
    const lines = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== "");
    if (!lines.length) throw new Error("paste some values first");
    let rows = lines.map((line, i) => line.split(/[\s,;]+/).filter(Boolean).map((token) => {
      const value = Number(token);
      if (!Number.isFinite(value)) throw new Error(`line ${i + 1}: "${token}" is not a number`);
      return value;
    }));
    const shape = spec.shape || [];
    const declared = shape.length === 2 && shape[1] > 0 ? shape[1] : null;
    // One pasted line of several numbers is a univariate series written across.
    if (rows.length === 1 && rows[0].length > 1 && declared !== rows[0].length) rows = rows[0].map((v) => [v]);
    const width = rows[0].length;
    const bad = rows.findIndex((r) => r.length !== width);
    if (bad >= 0) throw new Error(`line ${bad + 1} has ${rows[bad].length} values; the first line has ${width}`);
    const datatype = spec.datatype === "FP32" ? "FP32" : "FP64";
    const dims = shape.length === 2 || width > 1 ? [rows.length, width] : [rows.length];
    return { name: spec.name || "values", shape: dims, datatype, data: rows.flat() };
  }

  function parseCsv(text) {
    const rows = [];
    let row = [];
    let field = "";
    let quoted = false;
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (quoted) {
        if (c !== '"') field += c;
        else if (text[i + 1] === '"') { field += '"'; i++; } else quoted = false;
      } else if (c === '"' && field === "") quoted = true;
      else if (c === ",") { row.push(field); field = ""; }
      else if (c === "\n" || c === "\r") {
        if (c === "\r" && text[i + 1] === "\n") i++;
        row.push(field);
        rows.push(row);
        row = [];
        field = "";
      } else field += c;
    }
    if (quoted) throw new Error("a quoted CSV field is not closed");
    if (field !== "" || row.length) { row.push(field); rows.push(row); }
    return rows.filter((r) => !(r.length === 1 && r[0].trim() === ""));
  }

  function csvInputs(text, specs) {
    const rows = parseCsv(text);
    if (rows.length < 2) throw new Error("paste a header line and at least one row");
    const header = rows[0].map((h) => h.trim());
    const body = rows.slice(1);
    const missing = specs.filter((s) => !header.includes(s.name)).map((s) => s.name);
    if (missing.length) throw new Error(`the CSV lacks the column(s) ${missing.join(", ")}`);
    const short = body.findIndex((r) => r.length !== header.length);
    if (short >= 0) throw new Error(`row ${short + 1} has ${body[short].length} fields; the header has ${header.length}`);
    state.rows = body.map((r) => header.map((h, j) => `${h}=${r[j]}`).join(", "));
    return specs.map((spec) => {
      const j = header.indexOf(spec.name);
      return { name: spec.name, shape: [body.length], datatype: spec.datatype,
               data: body.map((r, i) => cell(r[j], spec, i + 1)) };
    });
  }

  function cell(raw, spec, row) {
    const text = raw.trim();
    const where = `row ${row}, column "${spec.name}"`;
    if (spec.datatype === "BYTES") return raw;
    if (spec.datatype === "BOOL") {
      if (/^(true|1)$/i.test(text)) return true;
      if (/^(false|0)$/i.test(text)) return false;
      throw new Error(`${where}: "${raw}" is not true or false`);
    }
    const value = text === "" ? NaN : Number(text);
    if (!Number.isFinite(value)) throw new Error(`${where}: "${raw}" is not a number`);
    if (/^U?INT/.test(spec.datatype) && !Number.isInteger(value)) throw new Error(`${where}: "${raw}" is not an integer`);
    return value;
  }

  // --- showing the answer ------------------------------------------------------------------
  function fmt(x) {
    const v = Number(x);
    return Number.isFinite(v) ? String(Number(v.toPrecision(5))) : String(x);
  }

  const isTrue = (v) => v === true || v === 1 || v === "true";

  function hideResult() {
    $("result").hidden = true;
    $("overlay-figure").hidden = true;
    $("plot-figure").hidden = true;
    $("table-wrap").hidden = true;
    $("overlay").removeAttribute("src");
    $("plot").replaceChildren();
    $("table-wrap").replaceChildren();
  }

  function render(response, request, mode) {
    const outputs = {};
    for (const o of response.outputs || []) outputs[o.name] = o;
    const scores = outputs.score ? outputs.score.data.map(Number) : [];
    const labels = outputs.label ? outputs.label.data.map(isTrue) : null;
    const unit = mode === "series" ? "readings" : mode === "csv" ? "rows"
      : scores.length === request.inputs[0].data.length ? "items" : "groups";
    renderSummary(scores, labels, mode, unit);
    if (mode === "image") renderOverlay(outputs.overlay);
    else if (mode === "series") renderPlot(request.inputs[0], scores, labels);
    else renderTable(response.outputs || [], request, mode, scores.length);
    $("result").hidden = false;
  }

  function badge(flag) {
    const span = document.createElement("span");
    span.id = "label";
    span.className = flag === null ? "badge none" : flag ? "badge bad" : "badge good";
    span.textContent = flag === null ? "no threshold" : flag ? "anomalous" : "normal";
    return span;
  }

  function scoreSpan(value) {
    const span = document.createElement("span");
    span.id = "score";
    span.className = "score";
    span.title = String(value);
    span.textContent = fmt(value);
    return span;
  }

  function renderSummary(scores, labels, mode, unit) {
    const summary = $("summary");
    if (!scores.length) {
      summary.replaceChildren("The model returned no scores.");
      return;
    }
    if (scores.length === 1 && mode !== "series") {
      summary.replaceChildren("Score ", scoreSpan(scores[0]), " ", badge(labels ? labels[0] : null));
      return;
    }
    let top = 0;
    scores.forEach((s, i) => { if (s > scores[top]) top = i; });
    const flagged = labels ? labels.filter(Boolean).length : null;
    summary.replaceChildren(
      `${scores.length} ${unit} scored, `,
      flagged === null ? "no threshold to flag with" : `${flagged} flagged`,
      `. Highest score `, scoreSpan(scores[top]), ` at #${top + 1} `,
      badge(labels ? labels[top] : null),
    );
    if (mode === "series" && labels && flagged) {
      const list = labels.flatMap((f, i) => (f ? [`#${i + 1} (${fmt(scores[i])})`] : []));
      const p = document.createElement("span");
      p.className = "flag-list";
      p.textContent = ` Flagged readings: ${list.slice(0, 50).join(", ")}${list.length > 50 ? ", …" : ""}.`;
      summary.append(p);
    }
  }

  function renderOverlay(overlay) {
    const img = $("overlay");
    const figure = $("overlay-figure");
    if (overlay && overlay.data && overlay.data.length) {
      img.src = `data:image/png;base64,${overlay.data[0]}`;
      figure.querySelector("figcaption").textContent = "Heatmap overlay: blue is normal, red is anomalous.";
    } else if (state.previewUrl) {
      img.src = state.previewUrl;
      figure.querySelector("figcaption").textContent = "This detector scores whole images; it draws no heatmap.";
    } else return;
    figure.hidden = false;
  }

  function svg(tag, attrs, parent) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    if (parent) parent.append(el);
    return el;
  }

  function renderPlot(input, scores, labels) {
    const n = input.shape[0];
    const width = input.shape.length === 2 ? input.shape[1] : 1;
    const column = (j) => Array.from({ length: n }, (_, i) => input.data[i * width + j]);
    const W = 800, left = 64, right = 12, top = 12, valueH = 200, gap = 28, scoreH = 90, bottom = 24;
    const H = top + valueH + gap + scoreH + bottom;
    const flagged = labels ? labels.filter(Boolean).length : 0;
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": "plot-title", class: "plot" });
    svg("title", { id: "plot-title" }, root).textContent =
      `Series of ${n} readings${width > 1 ? ` in ${width} variables` : ""}, ${flagged} flagged`;
    const x = (i) => left + (n > 1 ? (i / (n - 1)) * (W - left - right) : (W - left - right) / 2);
    const panel = (values, y0, h, extra = []) => {
      // A loop, not Math.min(...values): spreading a long series overflows the call stack.
      let lo = Infinity, hi = -Infinity;
      for (const v of values.concat(extra)) { if (v < lo) lo = v; if (v > hi) hi = v; }
      const [min, max] = [lo, hi];
      if (!(hi > lo)) { lo -= 1; hi += 1; }
      const pad = (hi - lo) * 0.05;
      lo -= pad; hi += pad;
      const y = (v) => y0 + h - ((v - lo) / (hi - lo)) * h;
      svg("rect", { x: left, y: y0, width: W - left - right, height: h, class: "frame" }, root);
      for (const v of min === max ? [min] : [min, max]) {
        svg("text", { x: left - 6, y: y(v) + 4, class: "tick", "text-anchor": "end" }, root).textContent =
          String(Number(v.toPrecision(3)));
      }
      return y;
    };
    const line = (values, y, cls) => svg("polyline", {
      points: values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" "), class: cls }, root);

    const columns = Array.from({ length: width }, (_, j) => column(j));
    const yValue = panel(columns.flat(), top, valueH);
    columns.forEach((values, j) => line(values, yValue, `series s${j % 4}`));
    if (width > 1) {
      const names = (state.meta.parameters || {}).variables || [];
      columns.forEach((_, j) => {
        svg("text", { x: left + 8 + j * 120, y: top + 14, class: `legend s${j % 4}` }, root).textContent =
          `— ${names[j] ?? `variable ${j + 1}`}`;
      });
    }
    if (labels) {
      labels.forEach((f, i) => {
        if (!f) return;
        for (const values of columns) {
          const dot = svg("circle", { cx: x(i).toFixed(1), cy: yValue(values[i]).toFixed(1), r: 4, class: "flag", "data-index": i }, root);
          svg("title", {}, dot).textContent = `#${i + 1}: value ${fmt(values[i])}, score ${fmt(scores[i])}`;
        }
      });
    }
    const y0 = top + valueH + gap;
    svg("text", { x: left, y: y0 - 8, class: "axis-label" }, root).textContent = "score";
    const threshold = state.meta.parameters ? state.meta.parameters.threshold : null;
    const finite = scores.filter(Number.isFinite);
    const hasThreshold = typeof threshold === "number";
    const yScore = panel(finite.length ? finite : [0], y0, scoreH, hasThreshold ? [threshold] : []);
    if (scores.length === n) line(scores.map((s) => (Number.isFinite(s) ? s : 0)), yScore, "score-line");
    if (hasThreshold) {
      const yt = yScore(threshold);
      svg("line", { x1: left, x2: W - right, y1: yt, y2: yt, class: "threshold" }, root);
      svg("text", { x: W - right - 4, y: yt - 4, class: "tick", "text-anchor": "end" }, root).textContent =
        `threshold ${fmt(threshold)}`;
    }
    svg("text", { x: left, y: H - 6, class: "tick" }, root).textContent = "1";
    svg("text", { x: W - right, y: H - 6, class: "tick", "text-anchor": "end" }, root).textContent = String(n);
    $("plot").replaceChildren(root);
    $("plot-figure").hidden = false;
  }

  function renderTable(outputs, request, mode, n) {
    // Every one-dimensional output with one value per scored item becomes a column.
    const columns = outputs.filter((o) => (o.shape || []).length === 1 && o.data && o.data.length === n);
    const source = mode === "lines" ? request.inputs[0].data : mode === "csv" ? state.rows : null;
    const showInput = source && source.length === n;
    const table = document.createElement("table");
    const caption = table.createCaption();
    caption.textContent = `${n} scored ${mode === "csv" ? "rows" : "items"}${n > MAX_TABLE_ROWS ? `, first ${MAX_TABLE_ROWS} shown` : ""}`;
    const headRow = table.createTHead().insertRow();
    const heads = ["#", ...(showInput ? [mode === "csv" ? "row" : "input"] : []), ...columns.map((c) => c.name)];
    for (const h of heads) {
      const th = document.createElement("th");
      th.scope = "col";
      th.textContent = h;
      headRow.append(th);
    }
    const body = table.createTBody();
    const label = columns.find((c) => c.name === "label");
    for (let i = 0; i < Math.min(n, MAX_TABLE_ROWS); i++) {
      const tr = body.insertRow();
      if (label && isTrue(label.data[i])) tr.className = "flagged";
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = String(i + 1);
      tr.append(th);
      if (showInput) {
        const td = tr.insertCell();
        td.className = "input";
        td.textContent = source[i];
      }
      for (const c of columns) {
        const td = tr.insertCell();
        const v = c.data[i];
        if (c.name === "label") {
          td.textContent = isTrue(v) ? "anomalous" : "normal";
          td.className = "label-cell";
        }
        else if (typeof v === "number") { td.textContent = fmt(v); td.className = "num"; }
        else td.textContent = String(v);
      }
    }
    $("table-wrap").replaceChildren(table);
    $("table-wrap").hidden = false;
  }

  // --- wiring ------------------------------------------------------------------------------
  function takeImage(file) {
    if (!file) return;
    state.imageFile = file;
    if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
    state.previewUrl = URL.createObjectURL(file);
    const preview = $("image-preview");
    preview.src = state.previewUrl;
    preview.alt = `Chosen image: ${file.name}`;
    preview.hidden = false;
    setStatus(`${file.name} (${Math.ceil(file.size / 1024)} KiB) is ready to score.`);
  }

  async function submit(event) {
    event.preventDefault();
    clearError();
    hideResult();
    const { model, mode } = state;
    if (!state.meta) return;
    let request;
    try {
      request = await buildRequest();
    } catch (e) {
      showError(e);
      return;
    }
    $("submit").disabled = true;
    setStatus("Scoring…");
    const started = performance.now();
    try {
      const response = await api(`v2/models/${encodeURIComponent(model)}/infer`, request);
      if (model !== state.model) return;
      render(response, request, mode);
      setStatus(`Scored by ${model} in ${Math.round(performance.now() - started)} ms.`);
    } catch (e) {
      setStatus("");
      showError(e);
    } finally {
      $("submit").disabled = false;
    }
  }

  function init() {
    const token = $("token");
    token.value = sessionStorage.getItem(TOKEN_KEY) || "";
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = token.value.trim();
      if (value) sessionStorage.setItem(TOKEN_KEY, value);
      else sessionStorage.removeItem(TOKEN_KEY);
      loadModels();
    });
    $("model").addEventListener("change", (event) => selectModel(event.target.value));
    $("reload").addEventListener("click", loadModels);
    $("infer-form").addEventListener("submit", submit);
    $("image-file").addEventListener("change", (event) => takeImage(event.target.files[0]));
    const drop = $("drop");
    drop.addEventListener("dragover", (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      drop.classList.remove("over");
      takeImage(event.dataTransfer.files[0]);
    });
    loadModels();
  }

  init();
})();
