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
// The event stream may fail this many times in a row (EventSource reconnects by itself) before the page gives up.
const STREAM_TRIES = 3;

const $ = (id) => document.getElementById(id);
let keypad = "";
// The call on the line: {id, events, started (the last prompt index played), failures (of its stream in a row),
// over (its stream ended or the page gave up on it)}.
let call = null;

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
  span.append(document.createTextNode(text)); // always one text node: a changed line changes only its data
  if (className) span.className = className;
  return span;
}

function insert(list, item, index) {
  item.dataset.index = String(index);
  const later = [...list.children].find((other) => Number(other.dataset.index) > index);
  list.insertBefore(item, later || null);
}

function upsert(list, index) {
  let item = list.querySelector(`li[data-index="${index}"]`);
  if (!item) {
    item = document.createElement("li");
    insert(list, item, index);
  }
  return item;
}

function stopAudio() {
  const audio = $("prompt-audio");
  if (!audio.paused) audio.pause();
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
    call = { id: created.id, events: null, started: -1, failures: 0, over: false };
    document.body.dataset.callId = created.id;
    delete document.body.dataset.stream;
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
    current.over = true;
    events.close();
    if (state.ended) {
      showState(state);
    } else { // the server is stopping: the call goes with it
      lose("The simulator stopped: this call is gone with it. Start serve again to call.", "stopped");
    }
    setLive(false);
    document.body.dataset.stream = "ended";
  });
  events.addEventListener("open", () => {
    if (call === current) current.failures = 0;
  });
  events.addEventListener("error", () => {
    if (call !== current || current.over) return;
    current.failures += 1;
    if (events.readyState !== EventSource.CLOSED && current.failures < STREAM_TRIES) {
      $("status").textContent = "Lost the simulator for a moment: reconnecting…";
      return;
    }
    current.over = true;
    events.close(); // a refused stream (404: no such call) or a server that keeps not answering
    streamLost(current);
  });
}

function lose(text, state) {
  const status = $("status");
  status.dataset.state = state;
  status.textContent = text;
  setLive(false);
  stopAudio();
}

async function streamLost(current) {
  // Why: the simulator does not know the call, or does not answer at all, or the call ended meanwhile.
  let text = null;
  let ended = null;
  try {
    const response = await fetch(`/softphone/calls/${encodeURIComponent(current.id)}`);
    const data = await response.json().catch(() => ({}));
    if (response.ok && data.ended) ended = data;
    else if (response.status === 404) text = `The simulator does not know call ${current.id} (was it restarted?). Call again.`;
    else text = `Lost this call's events (${data.error || `HTTP ${response.status}`}). Reload the page.`;
  } catch (error) {
    text = "Lost the simulator: it does not answer. Is serve still running?";
  }
  if (call !== current) return;
  if (ended) showState(ended);
  else lose(text, "lost");
  document.body.dataset.stream = "lost";
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
  stopAudio();
}

function showLine(line) {
  // The transcript is a live region that announces additions only: a new line is a new item, and a line that
  // changed (a notification's gains the bot's answer) changes its text in place, not announced again.
  const list = $("transcript");
  const texts = [`${line.at.toFixed(3)}s`, WHO[line.direction] || line.direction, line.summary];
  const item = list.querySelector(`li[data-index="${line.index}"]`);
  if (item) {
    item.dataset.direction = line.direction;
    item.querySelectorAll(":scope > span").forEach((span, i) => {
      if (span.firstChild.data !== texts[i]) span.firstChild.data = texts[i];
    });
    return;
  }
  const fresh = document.createElement("li");
  fresh.dataset.direction = line.direction;
  fresh.append(cell(texts[0], "at"), cell(texts[1], "who"), cell(texts[2], "what"));
  insert(list, fresh, line.index);
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
      if (error.name === "AbortError") return; // a new prompt's src, or pause(): what a barge-in does
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
    if (!event.repeat) press(event.key); // a key held down is one press, as on a phone
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
