// The softphone page: dial the bot, hear its prompts, press keys, watch the transcript.
// It talks only to the simulator's /softphone API (simulator/softphone/api.py); no framework, no build step.
"use strict";

const KEY_NAMES = { "*": "Star", "#": "Pound" };
const LETTERS = { 2: "ABC", 3: "DEF", 4: "GHI", 5: "JKL", 6: "MNO", 7: "PQRS", 8: "TUV", 9: "WXYZ", 0: "+" };
const WHO = { caller: "caller", "to-bot": "→ bot", "from-bot": "← bot", sim: "sim" };
const STATES = {
  incoming: "Ringing…", establishing: "Connecting…", established: "Connected", transferring: "Transferring…",
  transferAccepted: "Transferred", redirecting: "Redirecting…", terminating: "Hanging up…",
};
const TALK_SECONDS = 3;

const $ = (id) => document.getElementById(id);
let keypad = "";
let call = null; // the call on the line: {id, events, started (the last prompt index played)}

async function api(method, path, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `${method} ${path}: HTTP ${response.status}`);
  return data;
}

function showError(error) {
  $("error").textContent = error ? String(error.message || error) : "";
}

function cell(text, className) {
  const span = document.createElement("span");
  span.textContent = text;
  if (className) span.className = className;
  return span;
}

function upsert(list, index) {
  let item = list.querySelector(`li[data-index="${index}"]`);
  if (!item) {
    item = document.createElement("li");
    item.dataset.index = String(index);
    const later = [...list.children].find((other) => Number(other.dataset.index) > index);
    list.insertBefore(item, later || null);
  }
  return item;
}

function buildKeypad(keys) {
  keypad = keys;
  for (const key of keys) {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.key = key;
    button.disabled = true;
    button.setAttribute("aria-label", KEY_NAMES[key] || key);
    button.append(key);
    if (LETTERS[key]) button.append(Object.assign(document.createElement("small"), { textContent: LETTERS[key] }));
    button.addEventListener("click", () => press(key));
    $("keypad").append(button);
  }
}

function setLive(live) {
  $("call").disabled = live;
  $("from").disabled = live;
  $("to").disabled = live;
  $("hangup").disabled = !live;
  $("talk").disabled = !live;
  for (const button of $("keypad").querySelectorAll("button")) button.disabled = !live;
}

// -- the call -----------------------------------------------------------------------------------------

async function dial(event) {
  event.preventDefault();
  showError();
  const body = {};
  for (const field of ["from", "to"]) {
    const value = $(field).value.trim();
    if (value) body[field] = value;
  }
  try {
    const created = await api("POST", "/softphone/calls", body);
    if (call && call.events) call.events.close();
    $("transcript").replaceChildren();
    $("prompts").replaceChildren();
    call = { id: created.id, events: null, started: -1 };
    document.body.dataset.callId = created.id;
    setLive(true);
    $("status").textContent = "Calling…";
    listen(call);
  } catch (error) {
    showError(error);
  }
}

function listen(current) {
  const events = new EventSource(`/softphone/calls/${encodeURIComponent(current.id)}/events`);
  current.events = events;
  const on = (kind, handle) => events.addEventListener(kind, (event) => {
    if (call === current) handle(JSON.parse(event.data));
  });
  on("state", (state) => showState(state));
  on("line", (line) => showLine(line));
  on("prompt", (prompt) => showPrompt(current, prompt));
  on("end", (state) => {
    events.close();
    showState(state);
    document.body.dataset.stream = "ended";
  });
}

function showState(state) {
  const status = $("status");
  status.dataset.state = state.state;
  if (!state.ended) {
    status.textContent = STATES[state.state] || state.state;
    return;
  }
  const result = state.result;
  status.textContent = "Call ended" + (result ? `: ${result.code}/${result.subcode} ${result.message}` : "");
  setLive(false);
  const audio = $("prompt-audio");
  if (!audio.paused) audio.pause();
}

function showLine(line) {
  const item = upsert($("transcript"), line.index);
  item.dataset.direction = line.direction;
  item.replaceChildren(cell(`${line.at.toFixed(3)}s`, "at"), cell(WHO[line.direction] || line.direction, "who"),
    cell(line.summary, "what"));
}

function showPrompt(current, prompt) {
  const item = upsert($("prompts"), prompt.index);
  item.dataset.name = prompt.name;
  item.dataset.uri = prompt.uri;
  item.dataset.outcome = prompt.outcome;
  item.replaceChildren(cell(`${prompt.at.toFixed(3)}s`, "at"), cell(prompt.name, "name"),
    cell(prompt.outcome, "outcome"));
  const audio = $("prompt-audio");
  if (prompt.outcome === "playing" && prompt.index > current.started) {
    current.started = prompt.index;
    audio.src = prompt.audio;
    audio.dataset.index = String(prompt.index);
    audio.dataset.prompt = prompt.name;
    audio.dataset.uri = prompt.uri;
    audio.dataset.state = "loading";
    $("now-playing").textContent = prompt.name;
    audio.play().catch((error) => {
      audio.dataset.state = "blocked";
      showError(`The browser did not play ${prompt.name}: ${error.message}`);
    });
  } else if (!["playing", "completed"].includes(prompt.outcome) && audio.dataset.index === String(prompt.index)) {
    audio.pause(); // cancelled (a key barged in), cut off (the call ended) or failed
    audio.dataset.state = prompt.outcome;
    $("now-playing").textContent = `${prompt.name} (${prompt.outcome})`;
  }
}

function heard(state) {
  const audio = $("prompt-audio");
  audio.dataset.state = state;
  const item = $("prompts").querySelector(`li[data-index="${audio.dataset.index}"]`);
  if (item && state === "playing") item.dataset.played = "true";
}

async function press(key) {
  if (!call || $("hangup").disabled) return;
  const button = $("keypad").querySelector(`button[data-key="${CSS.escape(key)}"]`);
  if (button) {
    button.classList.add("pressed");
    setTimeout(() => button.classList.remove("pressed"), 150);
  }
  try {
    await api("POST", `/softphone/calls/${encodeURIComponent(call.id)}/tones`, { keys: key });
  } catch (error) {
    showError(error);
  }
}

async function act(path, body) {
  if (!call) return;
  showError();
  try {
    await api("POST", `/softphone/calls/${encodeURIComponent(call.id)}/${path}`, body);
  } catch (error) {
    showError(error);
  }
}

function onKey(event) {
  if (event.target instanceof HTMLInputElement || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.key.length === 1 && keypad.includes(event.key) && !$("hangup").disabled) {
    event.preventDefault();
    press(event.key);
  }
}

async function start() {
  $("dial").addEventListener("submit", dial);
  $("hangup").addEventListener("click", () => act("hangup"));
  $("talk").addEventListener("click", () => act("speech", { seconds: TALK_SECONDS }));
  document.addEventListener("keydown", onKey);
  const audio = $("prompt-audio");
  for (const state of ["playing", "ended", "error"]) audio.addEventListener(state, () => heard(state));
  try {
    const config = await api("GET", "/softphone/config");
    $("from").value = config.from;
    $("to").value = config.to;
    buildKeypad(config.keypad);
    document.body.dataset.ready = "true";
  } catch (error) {
    showError(error);
  }
}

start();
