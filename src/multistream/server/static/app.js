// The live view of one multi-stream session: one lane per stream, filled as the server's events arrive.
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
if (params.get("key")) $("apikey").value = params.get("key");

let ws = null;
let session = null;
let lanes = {};        // stream name -> {body, current message element or null}
let lastRow = 0;

function setStatus(text, cls) {
  $("status").textContent = text;
  $("status").className = "status " + (cls || "");
}

function note(text) {
  const line = document.createElement("div");
  line.textContent = text;
  $("log").appendChild(line);
  $("log").scrollTop = $("log").scrollHeight;
}

function setLive(on) {
  for (const id of ["input", "send", "abort"]) $(id).disabled = !on;
  if (on) $("input").focus();
}

function buildLanes(layout) {
  const main = $("lanes");
  main.textContent = "";
  lanes = {};
  const select = $("stream");
  select.textContent = "";
  for (const s of layout) {
    const lane = document.createElement("section");
    lane.className = `lane ${s.kind} ${s.trust}`;
    lane.dataset.stream = s.name;
    const head = document.createElement("div");
    head.className = "lane-head";
    const name = document.createElement("b");
    name.textContent = s.name;
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.textContent = s.kind + (s.trust === "untrusted" ? " · untrusted" : "");
    head.append(name, tag);
    if (s.kind === "output") {
      const stop = document.createElement("button");
      stop.textContent = "abort";
      stop.title = `abort the ${s.name} stream`;
      stop.onclick = () => send({ type: "abort", stream: s.name });
      head.appendChild(stop);
    } else {
      const opt = document.createElement("option");
      opt.value = opt.textContent = s.name;
      if (s.role === "user") opt.selected = true;
      select.appendChild(opt);
    }
    const body = document.createElement("div");
    body.className = "lane-body";
    lane.append(head, body);
    main.appendChild(lane);
    lanes[s.name] = { body, current: null, kind: s.kind };
  }
}

function nearBottom(el) {
  return el.scrollHeight - el.scrollTop - el.clientHeight < 40;
}

function append(stream, node) {
  const lane = lanes[stream];
  if (!lane) return;
  const stick = nearBottom(lane.body);
  lane.body.appendChild(node);
  if (stick) lane.body.scrollTop = lane.body.scrollHeight;
}

function onToken(ev) {
  const lane = lanes[ev.stream];
  if (!lane) return;
  if (!lane.current) {
    const msg = document.createElement("p");
    msg.className = "msg open";
    const at = document.createElement("span");
    at.className = "at";
    at.textContent = `row ${ev.row}`;
    const text = document.createElement("span");
    text.className = "text";
    msg.append(at, text);
    append(ev.stream, msg);
    lane.current = msg;
  }
  const stick = nearBottom(lane.body);
  lane.current.querySelector(".text").textContent += ev.text;
  if (stick) lane.body.scrollTop = lane.body.scrollHeight;
}

function onMessageEnd(ev) {
  const lane = lanes[ev.stream];
  if (!lane || !lane.current) return;
  lane.current.classList.remove("open");
  if (ev.forced && lane.kind === "output") lane.current.classList.add("forced-end");
  lane.current.querySelector(".at").textContent += ` – ${ev.row}`;
  if (!lane.current.querySelector(".text").textContent.trim()) lane.current.classList.add("blank");
  lane.current = null;
}

function onEvent(ev) {
  if (typeof ev.row === "number" && ev.row > lastRow) {
    lastRow = ev.row;
    $("row").textContent = String(lastRow);
  }
  switch (ev.type) {
    case "opened":
      session = ev.session;
      buildLanes(ev.layout);
      if ($("prefix").value && lanes.system) {
        // the system prompt is the session prefix, read before row 0
        const msg = document.createElement("p");
        msg.className = "msg prefix";
        const at = document.createElement("span");
        at.className = "at";
        at.textContent = "prefix";
        const text = document.createElement("span");
        text.className = "text";
        text.textContent = $("prefix").value;
        msg.append(at, text);
        append("system", msg);
      }
      setStatus(`session ${ev.session} · ${ev.model}`, "live");
      setLive(true);
      break;
    case "token":
      onToken(ev);
      break;
    case "message_end":
      onMessageEnd(ev);
      break;
    case "tool_call": {
      // one box per call in the call lane, filled in when the result comes back
      const box = document.createElement("div");
      box.className = "event call pending";
      box.dataset.row = String(ev.row);
      box.textContent = `⚙ ${ev.text} → running…`;
      append(ev.stream, box);
      break;
    }
    case "tool_result": {
      const pending = document.querySelectorAll(".event.call.pending");
      const box = Array.from(pending).find((b) => b.dataset.row === String(ev.row)) || pending[pending.length - 1];
      if (box) {
        box.classList.remove("pending");
        box.classList.add("result");
        box.textContent = box.textContent.replace(/→ running…$/, `→ ${ev.text}`);
      }
      break;
    }
    case "error":
      note(`error ${ev.code}: ${ev.message}`);
      break;
    case "closed":
      setStatus(`session closed (${ev.reason}) at row ${ev.row}`, "down");
      setLive(false);
      break;
  }
}

function send(msg) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
}

function connect() {
  if (ws) { ws.onclose = null; ws.onmessage = null; ws.close(); }
  setLive(false);
  lastRow = 0;
  $("row").textContent = "0";
  setStatus("connecting…");
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const key = $("apikey").value;
  const url = `${proto}://${location.host}/v1/sessions` + (key ? `?api_key=${encodeURIComponent(key)}` : "");
  ws = new WebSocket(url);
  ws.onopen = async () => {
    const temperature = parseFloat($("temperature").value) || 0;
    const streams = {};
    if (temperature > 0) {
      // sampling is set per output stream; ask the server which output streams its model has
      const headers = key ? { Authorization: `Bearer ${key}` } : {};
      const health = await fetch("/health", { headers }).then((r) => r.json()).catch(() => ({ outputs: [] }));
      for (const name of health.outputs || []) streams[name] = { temperature };
    }
    send({ type: "open", prefix: $("prefix").value, tools: $("tools").checked, streams });
  };
  ws.onmessage = (m) => {
    let ev;
    try { ev = JSON.parse(m.data); } catch { return; }
    onEvent(ev);
  };
  ws.onclose = (e) => {
    setLive(false);
    if (!$("status").classList.contains("down")) {
      setStatus(e.code === 1006 ? "connection refused or lost (API key?)" : `disconnected (${e.code})`, "down");
    }
  };
}

$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("input").value;
  if (!text) return;
  send({ type: "input", stream: $("stream").value || "user", text, bulk: true });
  $("input").value = "";
});
$("abort").onclick = () => send({ type: "abort" });
$("restart").onclick = () => { send({ type: "close" }); connect(); };

connect();
