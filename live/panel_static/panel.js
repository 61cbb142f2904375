// The reenact control panel: polls /api/state, sends every control to /api/control.
// No framework and no network access beyond this page's own server.
"use strict";
const token = new URLSearchParams(location.search).get("token");
const withToken = (url) => token ? `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}` : url;
const $ = (id) => document.getElementById(id);
const KEYS = {mouth: "live.gain_mouth", eyes: "live.gain_eyes", brows: "live.gain_brows", head_motion: "live.head_motion"};
const history = [];  // [{e2e, landmarks, inference}] once a second
let state = null;
let editing = null;  // the control being moved: its value is not overwritten by polling

async function send(action, value, name) {
  const r = await fetch(withToken("api/control"), {method: "POST", headers: {"Content-Type": "application/json"},
                                                  body: JSON.stringify({action, value, name})});
  if (!r.ok) { $("status").textContent = `refused: ${(await r.json()).detail || r.status}`; return; }
  show(await r.json());
}

function fmt(v, unit) { return v === null || v === undefined ? "–" : `${Number(v).toFixed(1)} ${unit}`; }

function show(s) {
  state = s;
  for (const [region, v] of Object.entries(s.regions)) {
    const el = $(`gain-${region}`);
    if (editing !== el) el.value = v;
    $(`gain-${region}-v`).textContent = Number(v).toFixed(1);
    el.parentElement.querySelector("label").classList.toggle("kept-mark", s.kept.includes(KEYS[region]));
  }
  const keptMark = (id, key) => $(id).parentElement.querySelector("label").classList.toggle("kept-mark", s.kept.includes(key));
  keptMark("badge", "output.badge_position"); keptMark("audio-offset", "audio.offset_ms");
  keptMark("camera", "capture.camera"); keptMark("microphone", "audio.input");
  $("steady-row").hidden = s.steady === null || s.steady === undefined;  // face replacement has no steadying
  if (!$("steady-row").hidden) {
    if (editing !== $("steady")) $("steady").value = s.steady;
    $("steady-v").textContent = Number(s.steady).toFixed(1);
    keptMark("steady", "live.steady");
  }
  for (const [list, items] of [["camera-list", s.cameras], ["microphone-list", s.microphones]]) {
    if ($(list).childElementCount !== items.length) {
      $(list).replaceChildren(...items.map((d) => Object.assign(document.createElement("option"), {value: d.index, label: d.name})));
    }
  }
  if (editing !== $("view")) $("view").value = s.view;
  if (editing !== $("badge")) $("badge").value = s.badge_position;
  if (editing !== $("audio-offset")) $("audio-offset").value = s.audio_offset_ms;
  $("audio-offset-v").textContent = `${s.audio_offset_ms} ms`;
  $("pause").setAttribute("aria-pressed", String(s.paused));
  $("pause").textContent = s.paused ? "Resume" : "Pause";
  for (const [id, name] of [["vcam", "virtual-camera"], ["rec", "recording"]]) {
    const on = Boolean(s.outputs[name]);
    $(id).setAttribute("aria-pressed", String(on));
    $(id).textContent = (on ? "Stop " : "Start ") + (id === "vcam" ? "virtual camera" : "recording");
  }
  $("e2e").textContent = fmt(s.stages_ms.e2e, "ms");
  $("degradation").textContent = s.degradation;
  $("audio-delay").textContent = s.audio_delay_ms === null ? "audio off" : fmt(s.audio_delay_ms, "ms");
  $("av-offset").textContent = s.av_offset_ms === null ? "audio off" : `${fmt(s.av_offset_ms, "ms")} (voice late +)`;
  $("model").textContent = s.model;
  $("models").textContent = s.models.length ? s.models.join(", ") : "none";
  $("settings-file").textContent = s.settings_file;
  if (document.activeElement !== $("camera")) $("camera").value = s.camera;
  if (document.activeElement !== $("microphone")) $("microphone").value = s.microphone;
  $("status").textContent = s.paused ? "paused" : `running · ${s.frames} frames`;
}

let lastFrames = null, lastT = null;
async function poll() {
  try {
    const r = await fetch(withToken("api/state"));
    if (r.status === 503) { $("status").textContent = "live is starting: the model is loading"; return; }
    if (!r.ok) { $("status").textContent = `error ${r.status}`; return; }
    const s = await r.json();
    const now = performance.now();
    if (lastFrames !== null) $("fps").textContent = ((s.frames - lastFrames) / ((now - lastT) / 1000)).toFixed(1);
    lastFrames = s.frames; lastT = now;
    history.push(s.stages_ms); if (history.length > 60) history.shift();
    show(s); draw();
  } catch (e) { $("status").textContent = "live has stopped"; }
}

function draw() {
  const c = $("chart"), g = c.getContext("2d");
  g.fillStyle = "#111"; g.fillRect(0, 0, c.width, c.height);
  const top = Math.max(40, ...history.map((h) => h.e2e || 0)) * 1.1;
  const series = [["e2e", "#ffd54a"], ["landmarks", "#7fd67f"], ["inference", "#6fa8ff"], ["compose", "#e07bd0"]];
  g.font = "11px sans-serif";
  series.forEach(([key, color], k) => {
    g.strokeStyle = color; g.beginPath();
    history.forEach((h, i) => { const x = i * c.width / 59, y = c.height - (h[key] || 0) / top * c.height;
                                i ? g.lineTo(x, y) : g.moveTo(x, y); });
    g.stroke(); g.fillStyle = color; g.fillText(key, 6 + 80 * k, 12);
  });
  g.fillStyle = "#888"; g.fillText(`${top.toFixed(0)} ms`, c.width - 50, 12);
}

function bindRange(el, act) {
  el.addEventListener("input", () => { editing = el; });
  el.addEventListener("change", async () => { await act(Number(el.value)); editing = null; });
}
document.querySelectorAll("input[data-region]").forEach((el) => bindRange(el, (v) => send("region", v, el.dataset.region)));
bindRange($("audio-offset"), (v) => send("audio_offset", v));
bindRange($("steady"), (v) => send("steady", v));
$("view").addEventListener("change", () => send("view", $("view").value));
$("badge").addEventListener("change", () => send("badge_position", $("badge").value));
$("recalibrate").addEventListener("click", () => send("recalibrate"));
$("pause").addEventListener("click", () => send("pause", !state.paused));
$("vcam").addEventListener("click", () => send("output", !state.outputs["virtual-camera"], "virtual-camera"));
$("rec").addEventListener("click", () => send("output", !state.outputs.recording, "recording"));
$("camera-set").addEventListener("click", () => send("camera", $("camera").value));
$("microphone-set").addEventListener("click", () => send("microphone", $("microphone").value));
$("output").src = withToken("stream/output.mjpg");
$("driver").src = withToken("stream/driver.mjpg");
poll(); setInterval(poll, 1000);
