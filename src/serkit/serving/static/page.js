// serkit web page: upload or record audio, show the prediction (served at /page.js).
"use strict";
const $ = (id) => document.getElementById(id);
const KNOWN = { angry: "#d92d20", anger: "#d92d20", happy: "#f79009", happiness: "#f79009", joy: "#f79009",
  sad: "#2e6fd8", sadness: "#2e6fd8", neutral: "#7a8699", fear: "#7a4cc2", fearful: "#7a4cc2",
  surprise: "#0e9384", surprised: "#0e9384", disgust: "#4c8c2b", disgusted: "#4c8c2b", calm: "#3ba7c9" };
const PALETTE = ["#3559e0", "#e04f8a", "#12a594", "#c27c0e", "#8e44ad", "#5d6b82", "#d14d2b", "#2f9e44"];
const state = { labels: [], maxBytes: 20 * 1024 * 1024, blob: null, name: null, busy: false, rec: null };

function colour(label) {
  const key = String(label).toLowerCase();
  if (KNOWN[key]) return KNOWN[key];
  const i = state.labels.indexOf(label);
  return PALETTE[(i < 0 ? 0 : i) % PALETTE.length];
}
function setStatus(text) { $("status").textContent = text || ""; }
function showError(text) { const e = $("error"); e.textContent = text || ""; e.hidden = !text; }
function percent(p) { return (100 * p).toFixed(p >= 0.995 || p < 0.001 ? 0 : 1) + "%"; }
function seconds(s) { return s < 10 ? s.toFixed(1) + " s" : Math.round(s) + " s"; }
function refresh() { $("submit").disabled = state.busy || !state.blob || !!state.rec; }

async function init() {
  try {
    const r = await fetch("health");
    const info = await r.json();
    state.labels = info.labels || [];
    state.maxBytes = info.max_upload_bytes || state.maxBytes;
    $("model").textContent = info.model;
    $("labels").textContent = state.labels.join(", ");
  } catch (err) { showError("Cannot reach the service: " + err); }
}

function choose(blob, name) {
  state.blob = blob; state.name = name;
  const player = $("player");
  if (player.src) URL.revokeObjectURL(player.src);
  player.src = URL.createObjectURL(blob); player.hidden = false;
  showError("");
  refresh();
}

$("file").addEventListener("change", () => {
  const f = $("file").files[0];
  if (!f) { state.blob = null; refresh(); return; }
  if (f.size > state.maxBytes) { showError(`The file is ${(f.size / 1048576).toFixed(1)} MiB; the limit is ${(state.maxBytes / 1048576).toFixed(1)} MiB.`); state.blob = null; refresh(); return; }
  choose(f, f.name);
  setStatus(`${f.name} · ${(f.size / 1024).toFixed(0)} KiB`);
});

$("submit").addEventListener("click", async () => {
  if (!state.blob || state.busy) return;
  state.busy = true; refresh(); showError(""); setStatus("Analysing…");
  const form = new FormData();
  form.append("file", state.blob, state.name || "audio.wav");
  const t0 = performance.now();
  try {
    const r = await fetch("predict?segments=" + $("segments").checked, { method: "POST", body: form });
    let body = null;
    try { body = await r.json(); } catch (_) { body = null; }
    if (!r.ok) {
      const detail = body && body.detail ? (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)) : r.statusText;
      throw new Error(`${r.status}: ${detail}`);
    }
    render(body);
    setStatus(`Done in ${Math.round(performance.now() - t0)} ms.`);
  } catch (err) {
    // an earlier prediction must not stand beside this error as if it were the answer
    $("result").hidden = true; $("timeline-card").hidden = true;
    setStatus(""); showError(String(err.message || err));
  } finally { state.busy = false; refresh(); }
});

function render(p) {
  const label = $("label");
  label.replaceChildren();
  const chip = document.createElement("span");
  chip.className = "chip"; chip.style.background = colour(p.label);
  label.append(chip, document.createTextNode(p.label));
  label.dataset.label = p.label;
  const top = p.probabilities[p.label] || 0;
  $("summary").textContent = `${percent(top)} · ${seconds(p.duration)} · ${p.source}`;
  // quality warnings (silence, clipping, short audio) beside the label: how far to trust it
  const warnings = $("warnings");
  warnings.replaceChildren();
  for (const w of p.warnings || []) {
    const item = document.createElement("li");
    item.dataset.code = w.code; item.textContent = w.message;
    warnings.append(item);
  }
  warnings.hidden = !warnings.children.length;
  const bars = $("bars");
  bars.replaceChildren();
  const order = Object.entries(p.probabilities).sort((a, b) => b[1] - a[1]);
  for (const [name, prob] of order) {
    const row = document.createElement("div");
    row.className = "bar" + (name === p.label ? " top" : "");
    row.dataset.label = name;
    const n = document.createElement("span"); n.className = "name"; n.textContent = name;
    const track = document.createElement("div"); track.className = "track";
    const fill = document.createElement("div"); fill.className = "fill";
    fill.style.background = colour(name); fill.style.width = "0%";
    track.append(fill);
    const pct = document.createElement("span"); pct.className = "pct"; pct.textContent = percent(prob);
    row.append(n, track, pct);
    bars.append(row);
    requestAnimationFrame(() => { fill.style.width = (100 * prob).toFixed(2) + "%"; });
  }
  $("result").hidden = false;
  renderTimeline(p);
}

function renderTimeline(p) {
  const card = $("timeline-card"), line = $("timeline"), axis = $("axis"), legend = $("legend");
  line.replaceChildren(); axis.replaceChildren(); legend.replaceChildren();
  const segs = p.segments || [];
  if (!segs.length || !(p.duration > 0)) { card.hidden = true; return; }
  // Windows overlap: give each the stretch nearer its own centre than its neighbours'.
  const cuts = [0];
  for (let i = 1; i < segs.length; i++) cuts.push((segs[i].start + segs[i - 1].end) / 2);
  cuts.push(p.duration);
  segs.forEach((s, i) => {
    const block = document.createElement("div");
    block.className = "seg";
    block.dataset.label = s.label;
    block.style.flex = `${Math.max(cuts[i + 1] - cuts[i], 0.001)} 1 0`;
    block.style.background = colour(s.label);
    block.textContent = s.label;
    block.title = `${s.start.toFixed(1)}–${s.end.toFixed(1)} s: ${s.label} ${percent(s.probabilities[s.label] || 0)}`;
    line.append(block);
  });
  const ticks = 4;
  for (let k = 0; k <= ticks; k++) {
    const t = document.createElement("span");
    t.style.left = (100 * k / ticks) + "%";
    t.textContent = seconds(p.duration * k / ticks);
    axis.append(t);
  }
  for (const name of new Set(segs.map((s) => s.label))) {
    const item = document.createElement("span");
    const dot = document.createElement("i"); dot.style.background = colour(name);
    item.append(dot, document.createTextNode(`${name} (${segs.filter((s) => s.label === name).length})`));
    legend.append(item);
  }
  card.hidden = false;
}

// ---- recording: capture PCM with an AudioWorklet (ScriptProcessor as a fallback) and
// encode 16-bit WAV here, since MediaRecorder's webm/opus is not readable by libsndfile.
const WORKLET = `class Capture extends AudioWorkletProcessor {
  process(inputs) { const ch = inputs[0] && inputs[0][0]; if (ch) this.port.postMessage(ch.slice(0)); return true; }
}
registerProcessor("serkit-capture", Capture);`;

async function startRecording() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) throw new Error("this browser cannot record (no getUserMedia; use https or localhost)");
  const stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
  const ctx = new AudioContext();
  const source = ctx.createMediaStreamSource(stream);
  const chunks = [];
  let node;
  if (ctx.audioWorklet && window.AudioWorkletNode) {
    const url = URL.createObjectURL(new Blob([WORKLET], { type: "text/javascript" }));
    await ctx.audioWorklet.addModule(url);
    URL.revokeObjectURL(url);
    node = new AudioWorkletNode(ctx, "serkit-capture");
    node.port.onmessage = (e) => chunks.push(e.data);
  } else {
    node = ctx.createScriptProcessor(4096, 1, 1);
    node.onaudioprocess = (e) => chunks.push(new Float32Array(e.inputBuffer.getChannelData(0)));
  }
  source.connect(node);
  node.connect(ctx.destination);  // keeps the node pulled; it outputs silence
  // Stay under the upload limit: 2 bytes per sample plus the header.
  const maxSeconds = Math.min(600, Math.floor((state.maxBytes - 1024) / (2 * ctx.sampleRate)));
  const started = performance.now();
  const timer = setInterval(() => {
    const s = (performance.now() - started) / 1000;
    setStatus(`Recording… ${s.toFixed(0)} s (stop with ■)`);
    if (s >= maxSeconds) stopRecording();
  }, 250);
  state.rec = { stream, ctx, source, node, chunks, timer };
}

async function stopRecording() {
  const rec = state.rec;
  if (!rec) return;
  state.rec = null;
  clearInterval(rec.timer);
  rec.source.disconnect(); rec.node.disconnect();
  rec.stream.getTracks().forEach((t) => t.stop());
  const rate = rec.ctx.sampleRate;
  await rec.ctx.close();
  $("record").textContent = "● Record"; $("record").classList.remove("recording");
  const wav = encodeWav(rec.chunks, rate);
  const secs = (wav.size - 44) / 2 / rate;
  if (secs < 0.2) { setStatus(""); showError("The recording is empty; allow the microphone and try again."); refresh(); return; }
  $("file").value = "";  // the recording replaces any chosen file
  choose(wav, "recording.wav");
  setStatus(`Recorded ${seconds(secs)}; analysing…`);
  $("submit").click();
}

function encodeWav(chunks, rate) {
  const n = chunks.reduce((a, c) => a + c.length, 0);
  const buf = new ArrayBuffer(44 + 2 * n), v = new DataView(buf);
  const text = (o, s) => { for (let i = 0; i < s.length; i++) v.setUint8(o + i, s.charCodeAt(i)); };
  text(0, "RIFF"); v.setUint32(4, 36 + 2 * n, true); text(8, "WAVE");
  text(12, "fmt "); v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
  v.setUint32(24, rate, true); v.setUint32(28, rate * 2, true); v.setUint16(32, 2, true); v.setUint16(34, 16, true);
  text(36, "data"); v.setUint32(40, 2 * n, true);
  let o = 44;
  for (const c of chunks) for (let i = 0; i < c.length; i++, o += 2) {
    const s = Math.max(-1, Math.min(1, c[i]));
    v.setInt16(o, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  }
  return new Blob([buf], { type: "audio/wav" });
}

$("record").addEventListener("click", async () => {
  if (state.rec) { await stopRecording(); return; }
  showError("");
  try {
    await startRecording();
    $("record").textContent = "■ Stop"; $("record").classList.add("recording");
    refresh();
  } catch (err) { state.rec = null; showError("Recording failed: " + (err.message || err)); }
});

init();
