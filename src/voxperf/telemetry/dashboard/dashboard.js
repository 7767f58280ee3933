// voxperf telemetry dashboard: plain JS, charts drawn as inline SVG, every request to this server.
//
// Numbers are shown exactly as the API returns them, formatted one way everywhere (fmt): times in
// ms with one decimal, ratios as percentages with one decimal, throughput per minute with two.
// Each shown number has a stable data-testid. ?refresh=SECONDS overrides the 10 s live interval.
// Metrics from OTLP histograms (options' event "otlp") have estimated percentiles and no single
// events: they are drawn in their own section, marked as estimates, and never offer a drill-down.
"use strict";

(function () {
  const KEY_STORAGE = "voxperf.telemetry.apiKey";
  const FILTERS = ["app_version", "processing_level", "provider"];
  const WINDOWS = ["1h", "24h", "7d", "30d"];
  const DASH = "\u2014";
  const SVG_NS = "http://www.w3.org/2000/svg";

  const TILES = [
    { metric: "ttfa_ms", stat: "p50", label: "TTFA p50", hint: "request start \u2192 first audio" },
    { metric: "ttfa_ms", stat: "p95", label: "TTFA p95", hint: "request start \u2192 first audio" },
    { metric: "server_ms", stat: "p95", label: "Server response p95", hint: "speech requests" },
    { metric: "streaming_efficiency", stat: "p50", label: "Streaming efficiency p50", hint: "audio / playout time" },
    { metric: "cache_hit_rate", stat: "value", label: "Cache hit rate", hint: "phrase cache" },
    { metric: "error_rate", stat: "value", label: "Error rate", hint: "speech requests" },
    { metric: "throughput", stat: "value", label: "Throughput", hint: "all events" },
    { metric: "stt_ms", stat: "p95", label: "Dictation STT p95", hint: "pipeline stage" },
    { metric: "encode_ms", stat: "p95", label: "Dictation encode p95", hint: "pipeline stage" },
    { metric: "rewrite_ms", stat: "p95", label: "Dictation rewrite p95", hint: "pipeline stage" },
    { metric: "paste_ms", stat: "p95", label: "Dictation paste p95", hint: "pipeline stage" },
  ];

  // LiveKit Agents' turn latencies (OTLP explicit-bucket histograms): a tile and a line for each that
  // has data in the window; the section is hidden when none has.
  const TURN_TILES = [
    { metric: "turn_e2e_latency_ms", stat: "p95", label: "Turn end-to-end p95", short: "end-to-end", hint: "user stops \u2192 agent speaks" },
    { metric: "llm_ttft_ms", stat: "p95", label: "LLM TTFT p95", short: "LLM TTFT", hint: "LLM time to first token" },
    { metric: "tts_ttfb_ms", stat: "p95", label: "TTS TTFB p95", short: "TTS TTFB", hint: "TTS time to first byte" },
    { metric: "transcription_delay_ms", stat: "p95", label: "Transcription delay p95", short: "transcription", hint: "end of speech \u2192 final transcript" },
    { metric: "end_of_turn_delay_ms", stat: "p95", label: "End-of-turn delay p95", short: "end of turn", hint: "end of speech \u2192 turn decided" },
  ];
  const ESTIMATED = "estimated from histogram buckets";

  const CHARTS = [
    {
      id: "ttfa",
      title: "TTFA (request start \u2192 first audio)",
      lines: [{ metric: "ttfa_ms", stat: "p50" }, { metric: "ttfa_ms", stat: "p95" }],
    },
    {
      id: "server",
      title: "Server response time",
      lines: [{ metric: "server_ms", stat: "p50" }, { metric: "server_ms", stat: "p95" }],
    },
    {
      id: "stages",
      title: "Dictation stages p95",
      lines: [
        { metric: "stt_ms", stat: "p95", label: "stt" },
        { metric: "encode_ms", stat: "p95", label: "encode" },
        { metric: "rewrite_ms", stat: "p95", label: "rewrite" },
        { metric: "paste_ms", stat: "p95", label: "paste" },
      ],
    },
    { id: "efficiency", title: "Streaming efficiency p50", lines: [{ metric: "streaming_efficiency", stat: "p50" }] },
    { id: "cache", title: "Phrase cache hit rate", lines: [{ metric: "cache_hit_rate", stat: "value", label: "hit rate" }] },
    { id: "errors", title: "Error rate", lines: [{ metric: "error_rate", stat: "value", label: "error rate" }] },
    { id: "throughput", title: "Throughput", lines: [{ metric: "throughput", stat: "value", label: "events" }] },
  ];

  const BREAKDOWNS = {
    providers: {
      by: "provider",
      columns: [
        { metric: "ttfa_ms", stat: "count" },
        { metric: "ttfa_ms", stat: "p50" },
        { metric: "ttfa_ms", stat: "p95" },
        { metric: "cache_hit_rate", stat: "value" },
        { metric: "error_rate", stat: "value" },
      ],
    },
    versions: {
      by: "app_version",
      columns: [
        { metric: "ttfa_ms", stat: "count" },
        { metric: "ttfa_ms", stat: "p50" },
        { metric: "ttfa_ms", stat: "p95" },
        { metric: "error_rate", stat: "value" },
        { metric: "stt_ms", stat: "p95" },
      ],
    },
  };

  const state = {
    gen: 0,
    timer: null,
    refreshes: 0,
    interval: refreshInterval(),
    units: {},
    events: {}, // metric -> the event carrying it ("otlp": an OTLP histogram)
    last: null, // the latest rendered data, redrawn on resize
    drill: null, // {metric, t_ms, bucket_ms}
    needsKey: false,
  };

  // ---- formatting (deterministic: the same API number always gives the same text) -------------

  function unitOf(metric) {
    const known = state.units[metric];
    if (known) return known;
    if (metric.endsWith("_ms")) return "ms";
    return metric === "throughput" ? "1/s" : "1";
  }

  function isNumber(v) {
    return typeof v === "number" && Number.isFinite(v);
  }

  function fmt(metric, v) {
    if (!isNumber(v)) return DASH;
    const unit = unitOf(metric);
    if (unit === "ms") return v.toFixed(1) + " ms";
    if (unit === "1/s") return (v * 60).toFixed(2) + "/min";
    return (v * 100).toFixed(1) + "%";
  }

  function fmtCount(n) {
    return isNumber(n) ? String(n) : DASH;
  }

  const pad = (n) => String(n).padStart(2, "0");

  function utcClock(ms) {
    const d = new Date(ms);
    return pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes());
  }

  function utcDay(ms) {
    const d = new Date(ms);
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate());
  }

  function utcStamp(ms) {
    return new Date(ms).toISOString().slice(0, 19).replace("T", " ") + " UTC";
  }

  function utcMinute(ms) {
    return utcDay(ms) + " " + utcClock(ms);
  }

  function statPrefix(line) {
    return line.stat === "value" ? "" : line.stat + " ";
  }

  function isHistogram(metric) {
    return state.events[metric] === "otlp";
  }

  function statLabel(line) {
    if (line.label) return line.label;
    return line.stat === "value" ? line.metric.replace(/_/g, " ") : line.stat;
  }

  // ---- DOM helpers (text only: nothing from the API is ever parsed as HTML) -------------------

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = v;
      else if (k === "className") node.className = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const child of children || []) if (child) node.appendChild(child);
    return node;
  }

  function svg(tag, attrs, parent) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined) continue;
      if (k === "text") node.textContent = v;
      else node.setAttribute(k, String(v));
    }
    if (parent) parent.appendChild(node);
    return node;
  }

  function byId(id) {
    return document.getElementById(id);
  }

  // ---- the query: window and filters, kept in the page's URL ----------------------------------

  function refreshInterval() {
    const raw = new URLSearchParams(location.search).get("refresh");
    const seconds = raw === null ? NaN : Number(raw);
    return Number.isFinite(seconds) && seconds > 0 ? Math.max(0.2, seconds) * 1000 : 10000;
  }

  function readUrl() {
    const params = new URLSearchParams(location.search);
    const win = params.get("window");
    if (win && WINDOWS.includes(win)) byId("f-window").value = win;
    for (const name of FILTERS) {
      const value = params.get(name);
      if (value) ensureOption(byId("f-" + name), value).selected = true;
    }
  }

  function writeUrl() {
    const params = new URLSearchParams(location.search);
    params.set("window", byId("f-window").value);
    for (const name of FILTERS) {
      const value = byId("f-" + name).value;
      if (value) params.set(name, value);
      else params.delete(name);
    }
    history.replaceState(null, "", location.pathname + "?" + params.toString());
  }

  function filters() {
    const out = {};
    for (const name of FILTERS) {
      const value = byId("f-" + name).value;
      if (value) out[name] = value;
    }
    return out;
  }

  function ensureOption(select, value) {
    for (const option of select.options) if (option.value === value) return option;
    const option = el("option", { value: value, text: value });
    select.appendChild(option);
    return option;
  }

  function fillOptions(values) {
    for (const name of FILTERS) {
      const select = byId("f-" + name);
      const current = select.value;
      const wanted = (values[name] || []).slice();
      if (current && !wanted.includes(current)) wanted.push(current);
      const have = Array.from(select.options).slice(1).map((o) => o.value);
      if (have.join("\n") === wanted.join("\n")) continue;
      while (select.options.length > 1) select.remove(1);
      for (const value of wanted) select.appendChild(el("option", { value: value, text: value }));
      select.value = current;
    }
  }

  // ---- the API ----------------------------------------------------------------------------------

  class AuthError extends Error {}

  async function api(path, params) {
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null) query.set(k, String(v));
    const headers = { Accept: "application/json" };
    const key = sessionStorage.getItem(KEY_STORAGE);
    if (key) headers.Authorization = "Bearer " + key;
    const response = await fetch(path + (query.toString() ? "?" + query : ""), { headers: headers, cache: "no-store" });
    if (response.status === 401) throw new AuthError(key ? "the API key was refused" : "an API key is needed");
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (!response.ok) {
      const message = body && body.error && body.error.message ? body.error.message : "HTTP " + response.status;
      throw new Error(path + ": " + message);
    }
    return body;
  }

  async function load() {
    const win = byId("f-window").value;
    const f = filters();
    const summary = await api("/v1/telemetry/summary", Object.assign({ window: win }, f));
    // every later query uses the summary's exact window, so all panels describe the same events
    const range = { start_ms: summary.start_ms, end_ms: summary.end_ms };
    const scoped = Object.assign({}, f, range);
    const wanted = {};
    for (const chart of CHARTS) {
      for (const line of chart.lines) {
        wanted[line.metric] = wanted[line.metric] || [];
        if (line.stat !== "value" && !wanted[line.metric].includes(line.stat)) wanted[line.metric].push(line.stat);
      }
    }
    const turns = activeTurns(summary);
    for (const tile of turns) wanted[tile.metric] = [tile.stat];
    const seriesJobs = Object.entries(wanted).map(([metric, stats]) =>
      api("/v1/telemetry/series", Object.assign({ metric: metric, stats: stats.join(",") || "p50" }, scoped)).then(
        (answer) => [metric, answer],
      ),
    );
    const breakdownJobs = [];
    for (const [table, spec] of Object.entries(BREAKDOWNS)) {
      const metrics = Array.from(new Set(spec.columns.map((c) => c.metric)));
      for (const metric of metrics) {
        breakdownJobs.push(
          api("/v1/telemetry/breakdown", Object.assign({ metric: metric, by: spec.by, stats: "p50,p95" }, scoped)).then(
            (answer) => [table, metric, answer.rows],
          ),
        );
      }
    }
    const [options, alerts, series, breakdowns] = await Promise.all([
      api("/v1/telemetry/options", range),
      api("/v1/alerts"),
      Promise.all(seriesJobs),
      Promise.all(breakdownJobs),
    ]);
    const tables = {};
    for (const [table, metric, rows] of breakdowns) {
      tables[table] = tables[table] || {};
      tables[table][metric] = rows;
    }
    return {
      summary: summary,
      options: options,
      alerts: alerts,
      series: Object.fromEntries(series),
      tables: tables,
      turns: turns,
    };
  }

  // the turn metrics with data in the summary's window (the others get no tile and no line)
  function activeTurns(summary) {
    return TURN_TILES.filter((tile) => {
      const m = (summary.metrics || {})[tile.metric];
      return m && m.count > 0;
    });
  }

  // ---- refresh loop -----------------------------------------------------------------------------

  function schedule() {
    clearTimeout(state.timer);
    state.timer = null;
    if (byId("live").checked && !state.needsKey) state.timer = setTimeout(refresh, state.interval);
  }

  async function refresh() {
    const gen = ++state.gen;
    clearTimeout(state.timer);
    document.body.dataset.loading = "true";
    try {
      const data = await load();
      if (gen !== state.gen) return; // a newer refresh (a filter change) has started
      state.needsKey = false;
      byId("auth").hidden = true;
      byId("forget-key").hidden = !sessionStorage.getItem(KEY_STORAGE);
      showError(null);
      for (const [name, info] of Object.entries(data.options.metrics || {})) {
        state.units[name] = info.unit;
        state.events[name] = info.event;
      }
      fillOptions(data.options.filters || {});
      state.last = data;
      render(data);
      state.refreshes += 1;
      document.body.dataset.refreshes = String(state.refreshes);
      const now = Date.now();
      const updated = byId("updated-at");
      updated.textContent = "Updated " + utcStamp(now);
      updated.dataset.at = String(now);
    } catch (error) {
      if (gen !== state.gen) return;
      if (error instanceof AuthError) {
        state.needsKey = true;
        byId("auth").hidden = false;
        byId("auth-message").textContent =
          "This telemetry server needs an API key (" + error.message + "). It is kept in this tab only (session storage).";
        byId("api-key").focus();
      } else {
        showError("Could not load the telemetry: " + (error && error.message ? error.message : String(error)));
      }
    } finally {
      if (gen === state.gen) {
        document.body.dataset.loading = "false";
        schedule();
      }
    }
  }

  function showError(message) {
    const box = byId("error");
    box.hidden = !message;
    box.textContent = message || "";
  }

  // ---- rendering --------------------------------------------------------------------------------

  function render(data) {
    const s = data.summary;
    byId("range").textContent = utcMinute(s.start_ms) + " \u2192 " + utcMinute(s.end_ms) + " UTC";
    renderAlerts(data.alerts);
    renderTiles(s);
    renderTurnTiles(data);
    renderCharts(data);
    renderBreakdown("providers", data.tables.providers || {});
    renderBreakdown("versions", data.tables.versions || {});
  }

  function thresholdFor(thresholds, metric, stat) {
    return (thresholds || []).find((t) => t.metric === metric && t.stat === stat) || null;
  }

  function levelOf(threshold, value) {
    if (!threshold || !isNumber(value)) return "none";
    const past = (limit) =>
      isNumber(limit) && (threshold.direction === "below" ? value < limit : value > limit);
    if (past(threshold.error)) return "error";
    if (past(threshold.warning)) return "warning";
    return "ok";
  }

  function limitText(threshold, level) {
    const limit = threshold[level];
    return (threshold.direction === "below" ? "< " : "> ") + fmt(threshold.metric, limit);
  }

  function renderAlerts(answer) {
    const alerts = answer.alerts || [];
    const list = byId("alerts");
    list.replaceChildren();
    if (!alerts.length) {
      list.appendChild(el("li", { className: "empty", text: "No alerts are configured." }));
      return;
    }
    for (const a of alerts) {
      const id = "alert-" + a.key;
      const threshold = thresholdFor(answer.thresholds, a.metric, a.stat) || {
        metric: a.metric,
        warning: a.warning,
        error: a.error,
        direction: "above",
      };
      const limits = ["warning", "error"]
        .filter((level) => isNumber(threshold[level]))
        .map((level) =>
          el("span", { className: "limit" }, [
            document.createTextNode(level + " "),
            el("span", { "data-testid": id + "-" + level, text: limitText(threshold, level) }),
          ]),
        );
      list.appendChild(
        el("li", { className: "alert level-" + a.level, "data-testid": id, "data-level": a.level }, [
          el("span", { className: "badge badge-" + a.level, "data-testid": id + "-level", text: a.level }),
          el("span", { className: "alert-name", text: metricTitle(a.metric) + (a.stat === "value" ? "" : " " + a.stat) }),
          el("span", { className: "alert-value", "data-testid": id + "-value", text: fmt(a.metric, a.value) }),
          el("span", { className: "limits" }, limits),
        ]),
      );
    }
  }

  function metricTitle(metric) {
    const names = {
      ttfa_ms: "TTFA",
      server_ms: "Server response",
      streaming_efficiency: "Streaming efficiency",
      cache_hit_rate: "Cache hit rate",
      error_rate: "Error rate",
      throughput: "Throughput",
      first_byte_ms: "First byte",
      turn_e2e_latency_ms: "Turn end-to-end",
      llm_ttft_ms: "LLM TTFT",
      tts_ttfb_ms: "TTS TTFB",
      transcription_delay_ms: "Transcription delay",
      end_of_turn_delay_ms: "End-of-turn delay",
    };
    return names[metric] || metric.replace(/_ms$/, "").replace(/_/g, " ");
  }

  function renderTiles(summary) {
    byId("tiles").replaceChildren(...TILES.map((tile) => tileNode(tile, summary, "events")));
  }

  // the voice agent section: shown only when a turn metric has data in the window
  function renderTurnTiles(data) {
    const turns = data.turns || [];
    byId("turns").hidden = turns.length === 0;
    byId("turn-tiles").replaceChildren(...turns.map((tile) => tileNode(tile, data.summary, "observations")));
  }

  function tileNode(tile, summary, counted) {
    const m = (summary.metrics || {})[tile.metric] || {};
    const value = m[tile.stat];
    const threshold = thresholdFor(summary.thresholds, tile.metric, tile.stat);
    const level = levelOf(threshold, value);
    const id = "tile-" + tile.metric + "-" + tile.stat;
    const estimated = isHistogram(tile.metric) || m.source === "histogram";
    const limits = threshold
      ? ["warning", "error"]
          .filter((l) => isNumber(threshold[l]))
          .map((l) =>
            el("span", { className: "limit limit-" + l }, [
              document.createTextNode(l + " "),
              el("span", { "data-testid": id + "-" + l, text: limitText(threshold, l) }),
            ]),
          )
      : [];
    return el(
      "div",
      {
        className: "tile level-" + level + (estimated ? " estimated" : ""),
        "data-level": level,
        "data-estimated": estimated ? "true" : null,
        role: "group",
        "aria-labelledby": id + "-label",
      },
      [
        el("div", { className: "tile-label", id: id + "-label", text: tile.label }),
        el("div", { className: "tile-value", "data-testid": id, "data-value": isNumber(value) ? value : "", text: fmt(tile.metric, value) }),
        el("div", { className: "tile-sub" }, [
          el("span", { "data-testid": id + "-count", text: fmtCount(m.count) }),
          document.createTextNode(" " + counted + " \u00b7 " + tile.hint),
        ]),
        estimated ? el("div", { className: "tile-sub tile-estimated", "data-testid": id + "-estimated", text: ESTIMATED }) : null,
        limits.length ? el("div", { className: "tile-limits" }, limits) : null,
      ],
    );
  }

  // ---- charts -----------------------------------------------------------------------------------

  function renderCharts(data) {
    for (const chart of CHARTS) drawChart(figureFor(byId("charts"), chart), chart, data);
    const turns = turnChart(data);
    if (turns) drawChart(figureFor(byId("turn-charts"), turns), turns, data);
  }

  function figureFor(box, chart) {
    let figure = byId("chart-" + chart.id);
    if (!figure) {
      figure = el("figure", { className: "chart", id: "chart-" + chart.id, "data-testid": "chart-" + chart.id }, [
        el("figcaption", { text: chart.title }),
        el("div", { className: "plot" }),
        el("div", { className: "legend" }),
      ]);
      box.appendChild(figure);
    }
    return figure;
  }

  // one chart with the p95 line of each turn metric that has data (none: no chart)
  function turnChart(data) {
    const turns = data.turns || [];
    if (!turns.length) return null;
    return {
      id: "turns",
      title: "Voice agent turn latencies p95 (" + ESTIMATED + ")",
      lines: turns.map((tile) => ({ metric: tile.metric, stat: tile.stat, label: tile.short })),
    };
  }

  function niceStep(raw) {
    if (!(raw > 0)) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 2.5, 5, 10]) if (raw <= m * power) return m * power;
    return 10 * power;
  }

  function decimals(step) {
    for (let d = 0; d < 4; d++) {
      const scaled = step * Math.pow(10, d);
      if (Math.abs(scaled - Math.round(scaled)) < 1e-6 * Math.max(1, scaled)) return d;
    }
    return 4;
  }

  function tickText(unit, v, step) {
    if (unit === "ms") return v.toFixed(decimals(step)) + " ms";
    if (unit === "1/s") return (v * 60).toFixed(decimals(step * 60)) + "/min";
    return (v * 100).toFixed(decimals(step * 100)) + "%";
  }

  const TIME_STEPS = [60e3, 300e3, 900e3, 1800e3, 3600e3, 7200e3, 10800e3, 21600e3, 43200e3, 86400e3, 172800e3, 604800e3];

  function drawChart(figure, chart, data) {
    const plot = figure.querySelector(".plot");
    const legend = figure.querySelector(".legend");
    const thresholds = data.summary.thresholds || [];
    const anySeries = data.series[chart.lines[0].metric];
    const start = anySeries.start_ms;
    const end = anySeries.end_ms;
    const bucket = anySeries.bucket_ms;
    const unit = unitOf(chart.lines[0].metric);
    const lines = chart.lines.map((line, i) => ({
      line: line,
      index: i,
      points: (data.series[line.metric].points || [])
        .filter((p) => isNumber(p[line.stat]))
        .map((p) => ({ t: p.t_ms, v: p[line.stat], count: p.count, source: p.source })),
    }));
    // an OTLP histogram has no single events: nothing to drill into (the API answers 400)
    const estimated =
      chart.lines.some((l) => isHistogram(l.metric)) || lines.some((l) => l.points.some((p) => p.source === "histogram"));
    const drillable = !estimated && (unit === "ms" || chart.lines.every((l) => l.metric === "streaming_efficiency"));
    const limits = [];
    for (const line of chart.lines) {
      const t = thresholdFor(thresholds, line.metric, line.stat);
      if (!t) continue;
      for (const level of ["warning", "error"]) {
        if (isNumber(t[level])) limits.push({ threshold: t, level: level, value: t[level], line: line });
      }
    }

    const width = Math.max(320, Math.floor(plot.clientWidth || 560));
    const height = 220;
    const m = { left: 68, right: 14, top: 12, bottom: 26 };
    const innerW = width - m.left - m.right;
    const innerH = height - m.top - m.bottom;
    let top = 0;
    for (const l of lines) for (const p of l.points) top = Math.max(top, p.v);
    for (const l of limits) top = Math.max(top, l.value);
    if (unit === "1" && chart.lines[0].metric === "streaming_efficiency") top = Math.max(top, 1);
    const shown = unit === "ms" ? 1 : unit === "1/s" ? 60 : 100; // ticks are nice in the shown unit
    const headroom = top > 0 ? top * 1.08 : 1 / shown;
    const yStep = niceStep((headroom * shown) / 4) / shown;
    const yMax = Math.max(yStep, Math.ceil(headroom / yStep - 1e-9) * yStep);
    const x = (t) => m.left + ((Math.min(Math.max(t, start), end) - start) / Math.max(1, end - start)) * innerW;
    const y = (v) => m.top + innerH - (v / yMax) * innerH;

    const root = svg("svg", {
      width: width,
      height: height,
      viewBox: "0 0 " + width + " " + height,
      role: "img",
      class: "plot-svg",
      "aria-label": chartSummary(chart, lines),
    });
    // grid and y axis
    const axis = svg("g", { class: "axis" }, root);
    for (let i = 0, v = 0; v <= yMax + yStep / 1e6; i++, v = i * yStep) {
      svg("line", { x1: m.left, x2: width - m.right, y1: y(v), y2: y(v), class: "grid" }, axis);
      svg("text", {
        x: m.left - 6,
        y: y(v) + 4,
        "text-anchor": "end",
        "data-testid": "axis-" + chart.id + "-y-" + i,
        text: tickText(unit, v, yStep),
      }, axis);
    }
    // x axis: ticks on UTC-aligned steps
    const span = end - start;
    const tStep = TIME_STEPS.find((s) => span / s <= 6) || TIME_STEPS[TIME_STEPS.length - 1];
    let xi = 0;
    for (let t = Math.ceil(start / tStep) * tStep; t <= end; t += tStep, xi++) {
      svg("line", { x1: x(t), x2: x(t), y1: m.top + innerH, y2: m.top + innerH + 4, class: "tick" }, axis);
      svg("text", {
        x: x(t),
        y: height - 6,
        "text-anchor": "middle",
        "data-testid": "axis-" + chart.id + "-x-" + xi,
        text: tStep >= 86400e3 ? utcDay(t).slice(5) : utcClock(t),
      }, axis);
    }
    svg("line", { x1: m.left, x2: width - m.right, y1: m.top + innerH, y2: m.top + innerH, class: "baseline" }, axis);

    // the selected bucket (drill-down)
    const d = state.drill;
    if (d && chart.lines.some((l) => l.metric === d.metric)) {
      svg("rect", {
        x: x(d.t_ms),
        y: m.top,
        width: Math.max(2, x(d.t_ms + d.bucket_ms) - x(d.t_ms)),
        height: innerH,
        class: "selected",
        "data-testid": "selected-" + chart.id,
      }, root);
    }

    // clickable bucket columns (one metric per chart: the click means that metric)
    const single = new Set(chart.lines.map((l) => l.metric)).size === 1;
    if (drillable && single) {
      const metric = chart.lines[0].metric;
      const times = new Set();
      for (const l of lines) for (const p of l.points) times.add(p.t);
      const hits = svg("g", { class: "hits" }, root);
      for (const t of Array.from(times).sort((a, b) => a - b)) {
        const hit = svg("rect", {
          x: x(t),
          y: m.top,
          width: Math.max(2, x(t + bucket) - x(t)),
          height: innerH,
          class: "hit",
          "data-testid": "bucket-" + chart.id + "-" + t,
        }, hits);
        const rollup = lines.some((l) => l.points.some((p) => p.t === t && p.source === "rollup"));
        hit.addEventListener("click", () => drill(metric, t, bucket, rollup ? "rollup" : "raw"));
      }
    }

    // threshold lines
    const marks = svg("g", { class: "thresholds" }, root);
    for (const l of limits) {
      const key = "threshold-" + l.line.metric + "-" + l.line.stat + "-" + l.level;
      svg("line", {
        x1: m.left,
        x2: width - m.right,
        y1: y(l.value),
        y2: y(l.value),
        class: "threshold threshold-" + l.level,
        "data-testid": key,
        "data-value": l.value,
      }, marks);
      svg("text", {
        x: m.left + 4,
        y: y(l.value) - 3,
        "text-anchor": "start",
        class: "threshold-label threshold-" + l.level,
        "data-testid": key + "-label",
        text: statPrefix(l.line) + l.level + " " + fmt(l.line.metric, l.value),
      }, marks);
    }

    // the series: a path broken where buckets are missing, and one point per bucket
    for (const l of lines) {
      let path = "";
      let previous = null;
      for (const p of l.points) {
        const joined = previous !== null && p.t - previous <= bucket;
        path += (joined ? " L" : " M") + x(p.t + bucket / 2).toFixed(1) + " " + y(p.v).toFixed(1);
        previous = p.t;
      }
      svg("path", { d: path.trim(), class: "series s" + l.index, "data-testid": "line-" + l.line.metric + "-" + l.line.stat }, root);
    }
    for (const l of lines) {
      const group = svg("g", { class: "points s" + l.index }, root);
      const seen = new Set(); // a bucket across the raw-retention cut comes twice (rollup, raw)
      for (const p of l.points) {
        const testid = "point-" + l.line.metric + "-" + l.line.stat + "-" + p.t + (seen.has(p.t) ? "-" + p.source : "");
        seen.add(p.t);
        const label =
          metricTitle(l.line.metric) + " " + (single ? statLabel(l.line) : l.line.stat) + " " + utcClock(p.t) + "\u2013" + utcClock(p.t + bucket) +
          ": " + fmt(l.line.metric, p.v) + " (" + p.count + (estimated ? " observations, " + ESTIMATED + ")" : " events)");
        const dot = svg("circle", {
          cx: x(p.t + bucket / 2),
          cy: y(p.v),
          r: 4,
          class: "point" + (drillable ? " drill" : "") + (estimated ? " estimated" : ""),
          "data-testid": testid,
          "data-value": p.v,
          "data-t": p.t,
        }, group);
        svg("title", { text: label + (drillable ? " \u2014 click for the slowest sessions" : "") }, dot);
        if (drillable) {
          dot.setAttribute("tabindex", "0");
          dot.setAttribute("role", "button");
          dot.setAttribute("aria-label", label + ", show the slowest sessions");
          const go = () => drill(l.line.metric, p.t, bucket, p.source);
          dot.addEventListener("click", go);
          dot.addEventListener("keydown", (event) => {
            if (event.key === "Enter" || event.key === " ") {
              event.preventDefault();
              go();
            }
          });
        }
      }
    }
    if (!lines.some((l) => l.points.length)) {
      svg("text", { x: m.left + innerW / 2, y: m.top + innerH / 2, "text-anchor": "middle", class: "empty", text: "No data in this window" }, root);
    }
    plot.replaceChildren(root);

    legend.replaceChildren();
    for (const l of lines) {
      legend.appendChild(
        el("span", { className: "key" }, [el("span", { className: "swatch s" + l.index, "aria-hidden": "true" }), document.createTextNode(statLabel(l.line))]),
      );
    }
    for (const l of limits) {
      legend.appendChild(
        el("span", { className: "key" }, [
          el("span", { className: "swatch dashed threshold-" + l.level, "aria-hidden": "true" }),
          document.createTextNode(statPrefix(l.line) + l.level + " "),
          el("span", {
            "data-testid": "legend-" + l.line.metric + "-" + l.line.stat + "-" + l.level,
            text: limitText(l.threshold, l.level),
          }),
        ]),
      );
    }
  }

  function chartSummary(chart, lines) {
    const parts = lines.map((l) => {
      const last = l.points[l.points.length - 1];
      return statLabel(l.line) + (last ? " latest " + fmt(l.line.metric, last.v) : " no data");
    });
    return chart.title + ": " + parts.join(", ");
  }

  // ---- drill-down -------------------------------------------------------------------------------

  async function drill(metric, t, bucket, source) {
    if (isHistogram(metric)) return; // no single events behind an OTLP histogram
    state.drill = { metric: metric, t_ms: t, bucket_ms: bucket };
    if (state.last) renderCharts(state.last);
    const caption = byId("drill-caption");
    const table = byId("slowest");
    const range = utcDay(t) + " " + utcClock(t) + "\u2013" + utcClock(t + bucket) + " UTC";
    const worst = metric === "streaming_efficiency" ? "lowest" : "slowest";
    caption.textContent = "Loading the " + worst + " sessions by " + metricTitle(metric) + ", " + range + "\u2026";
    const token = (state.drillToken = (state.drillToken || 0) + 1);
    try {
      const answer = await api(
        "/v1/telemetry/slowest",
        Object.assign({ metric: metric, start_ms: t, end_ms: t + bucket, limit: 20 }, filters()),
      );
      if (token !== state.drillToken) return;
      const events = answer.events || [];
      caption.replaceChildren(
        document.createTextNode("The "),
        el("span", { "data-testid": "drill-count", text: String(events.length) }),
        document.createTextNode(" " + worst + " sessions by " + metricTitle(metric) + ", "),
        el("span", { "data-testid": "drill-range", "data-start": t, "data-end": t + bucket, text: range }),
      );
      byId("slowest-metric").textContent = metricTitle(metric);
      const body = table.tBodies[0];
      body.replaceChildren();
      events.forEach((e, i) => {
        const cell = (name, text, cls) => el("td", { "data-testid": "slowest-" + i + "-" + name, className: cls || null, text: text });
        body.appendChild(
          el("tr", { "data-testid": "slowest-row-" + i }, [
            el("th", { scope: "row", "data-testid": "slowest-" + i + "-rank", text: String(i + 1) }),
            cell("time", utcStamp(e.ts_ms)),
            cell("value", fmt(metric, e[metric]), "num"),
            cell("session", e.session_id || DASH, "mono"),
            cell("app_version", e.app_version || DASH),
            cell("provider", e.provider || DASH),
            cell("processing_level", e.processing_level || DASH),
            cell("cache", e.cache || DASH),
            cell("outcome", e.outcome || DASH),
            cell("os", e.os_version || DASH),
          ]),
        );
      });
      table.hidden = events.length === 0;
      if (!events.length) {
        caption.appendChild(
          document.createTextNode(
            source === "rollup"
              ? ": this bucket is older than the raw-event retention, only hourly rollups (no sessions) remain."
              : ": no session in this bucket has this timing.",
          ),
        );
      }
    } catch (error) {
      if (token !== state.drillToken) return;
      table.hidden = true;
      if (error instanceof AuthError) caption.textContent = "An API key is needed.";
      else caption.textContent = "Could not load the slowest sessions: " + error.message;
    }
  }

  // ---- breakdown tables ---------------------------------------------------------------------------

  function renderBreakdown(table, rowsByMetric) {
    const spec = BREAKDOWNS[table];
    const keys = new Set();
    const index = {};
    for (const [metric, rows] of Object.entries(rowsByMetric)) {
      index[metric] = {};
      for (const row of rows) {
        const key = row[spec.by];
        if (key === null || key === undefined) continue;
        keys.add(String(key));
        index[metric][String(key)] = row;
      }
    }
    const body = byId(table).tBodies[0];
    body.replaceChildren();
    const sorted = Array.from(keys).sort();
    if (!sorted.length) {
      body.appendChild(el("tr", {}, [el("td", { colspan: spec.columns.length + 1, className: "empty", text: "No data in this window" })]));
      return;
    }
    for (const key of sorted) {
      const cells = spec.columns.map((c) => {
        const row = (index[c.metric] || {})[key];
        const value = row ? row[c.stat] : null;
        const text = c.stat === "count" ? fmtCount(value) : fmt(c.metric, value);
        return el("td", { className: "num", "data-testid": spec.by + "-" + key + "-" + c.metric + "-" + c.stat, text: text });
      });
      body.appendChild(el("tr", { "data-testid": spec.by + "-row-" + key }, [el("th", { scope: "row", text: key }), ...cells]));
    }
  }

  // ---- wiring -------------------------------------------------------------------------------------

  function start() {
    readUrl();
    const live = byId("live");
    live.parentElement.title = "Re-fetch every " + state.interval / 1000 + " s";
    byId("filters").addEventListener("change", () => {
      writeUrl();
      state.drill = null;
      byId("slowest").hidden = true;
      byId("drill-caption").textContent = "Pick a point on a timing chart.";
      refresh();
    });
    byId("filters").addEventListener("submit", (event) => event.preventDefault());
    live.addEventListener("change", () => (live.checked ? refresh() : schedule()));
    byId("auth-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const key = byId("api-key").value.trim();
      if (!key) return;
      sessionStorage.setItem(KEY_STORAGE, key);
      byId("api-key").value = "";
      refresh();
    });
    byId("forget-key").addEventListener("click", () => {
      sessionStorage.removeItem(KEY_STORAGE);
      byId("forget-key").hidden = true;
      refresh();
    });
    let pending = false;
    window.addEventListener("resize", () => {
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => {
        pending = false;
        if (state.last) renderCharts(state.last);
      });
    });
    refresh();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
