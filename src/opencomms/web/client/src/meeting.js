// The meeting page (a meeting's joinWebUrl, and /web/meeting where sign-in comes back): join as a guest with a
// name, or sign in (authorization code + PKCE against the node's identity endpoints), then take part over
// SIP-over-WebSocket (JsSIP): the roster with who is speaking (from the node's feed, web/feed.py), mute, leave, a
// dial pad (RFC 4733 through rtpengine), the recording indicator, live captions (when the meeting is transcribed:
// speaker and words of the last few utterances) and a device picker.
// Tests read the page's state through window.opencommsMeeting.
import { $, codecs, failure, measure, userAgent, whenConnected } from "./common.js";

const config = $("meeting-config").dataset;
const STORE = "opencomms.meeting";

const state = {
  ua: null,
  session: null,
  feed: null,
  credential: "",
  status: "ready",
  error: "",
  me: "",
  inLobby: false,
  recording: null,
  speaker: null,
  muted: false,
  roster: new Map(),
  captions: [],
  peak: 0,
  rms: 0,
  recent: 0,
  tones: "",
  sinkId: "",
};

window.opencommsMeeting = {
  status: () => state.status,
  error: () => state.error,
  roster: () => [...state.roster.values()],
  me: () => state.me,
  inLobby: () => state.inLobby,
  recording: () => state.recording,
  speaker: () => state.speaker,
  captions: () => state.captions.map((c) => ({ speaker: c.speaker, text: c.text })),
  level: () => ({ peak: state.peak, rms: state.rms, recent: state.recent }),
  resetLevel: () => {
    state.peak = 0;
    state.rms = 0;
  },
  tones: () => state.tones,
  // the label of the microphone track the call sends (the device picker replaces it)
  microphone: () => {
    const pc = state.session && state.session.connection;
    const sender = pc && pc.getSenders().find((s) => s.track && s.track.kind === "audio");
    return sender ? sender.track.label : "";
  },
  codecs: () => codecs(state.session),
};

function show(status, text) {
  const first = status === "in-meeting" && state.status !== "in-meeting";
  state.status = status;
  $("status").textContent = text;
  const inMeeting = status === "joining" || status === "lobby" || status === "in-meeting";
  $("join").classList.toggle("hidden", inMeeting || status === "left" || !config.thread); // /web/meeting: no guest form
  $("meeting").classList.toggle("hidden", !inMeeting);
  if (first && document.activeElement === document.body) $("mute").focus(); // keyboard users land on the controls
}

// -- roster ---------------------------------------------------------------------------------------------------
function renderRoster() {
  const list = $("roster");
  const seen = new Set();
  for (const p of state.roster.values()) {
    seen.add(p.id);
    let item = list.querySelector(`li[data-id="${CSS.escape(p.id)}"]`);
    if (!item) {
      item = document.createElement("li");
      item.dataset.id = p.id;
      item.innerHTML = '<span class="name"></span><span class="tags"></span>';
      list.appendChild(item);
    }
    const speaking = state.speaker && p.sourceId === state.speaker;
    item.classList.toggle("speaking", Boolean(speaking));
    item.querySelector(".name").textContent = p.name + (p.me ? " (you)" : "");
    const tags = [];
    if (speaking) tags.push("speaking");
    if (p.isMuted || p.serverMuted) tags.push(p.serverMuted ? "muted by host" : "muted");
    if (p.isInLobby) tags.push("in the lobby");
    item.querySelector(".tags").textContent = tags.join(", ");
    item.dataset.muted = String(p.isMuted || p.serverMuted);
    item.dataset.speaking = String(Boolean(speaking));
  }
  for (const item of [...list.children]) if (!seen.has(item.dataset.id)) item.remove();
}

// -- captions -------------------------------------------------------------------------------------------------
const CAPTION_LINES = 4;

function addCaption(message) {
  state.captions.push({ speaker: String(message.speaker || ""), text: String(message.text || "") });
  if (state.captions.length > CAPTION_LINES) state.captions.shift();
  const list = $("captions");
  const item = document.createElement("li");
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = `${message.speaker}:`;
  item.append(who, document.createTextNode(String(message.text || "")));
  list.appendChild(item);
  while (list.children.length > CAPTION_LINES) list.firstElementChild.remove();
  list.classList.remove("hidden");
}

function onFeed(message) {
  if (message.type === "caption") {
    addCaption(message);
    return;
  }
  if (message.type === "roster") {
    state.me = message.me;
    state.inLobby = message.inLobby;
    state.roster = new Map(message.participants.map((p) => [p.id, p]));
    setRecording(message.recording);
    show(state.inLobby ? "lobby" : "in-meeting", state.inLobby ? "Waiting in the lobby until someone lets you in." : "In the meeting.");
  } else if (message.type === "participant") {
    const p = message.participant;
    state.roster.set(p.id, p);
    if (p.me) {
      state.inLobby = p.isInLobby;
      if (p.serverMuted) setMuted(true, false);
    }
  } else if (message.type === "left") {
    state.roster.delete(message.id);
  } else if (message.type === "speaker") {
    state.speaker = message.sourceId;
    const who = [...state.roster.values()].find((p) => p.sourceId === message.sourceId);
    $("speaker").textContent = who ? `${who.name} is speaking.` : "";
  } else if (message.type === "recording") {
    setRecording(message.status);
  } else if (message.type === "ended") {
    end("The meeting ended for you.");
    return;
  }
  renderRoster();
}

function setRecording(status) {
  state.recording = status;
  $("recording").classList.toggle("hidden", status !== "recording");
}

function openFeed() {
  const base = config.wsUrl.replace(/\/sip\/ws$/, "/web/feed");
  const param = state.credential.startsWith("t:") ? "ticket" : "access_token";
  const feed = new WebSocket(`${base}?${param}=${encodeURIComponent(state.credential.slice(2))}`);
  feed.onmessage = (event) => {
    try {
      onFeed(JSON.parse(event.data));
    } catch (err) {
      console.warn("feed message", err);
    }
  };
  state.feed = feed;
}

// -- joining --------------------------------------------------------------------------------------------------
function ua(wsUrl, query, name) {
  state.ua = userAgent(`${wsUrl}?${query}`, "sip:web@opencomms.invalid", name, (e) => {
    console.warn(`SIP WebSocket closed (${(e && e.code) || ""} ${(e && e.reason) || ""})`);
    if (state.status === "joining" || state.status === "lobby" || state.status === "in-meeting") end("Connection lost.");
  });
  return state.ua;
}

function heard(rms, peak) {
  state.recent = rms;
  state.peak = Math.max(state.peak, peak);
  state.rms = Math.max(state.rms, rms);
}

function join(target, wsUrl, query, name, iceServers) {
  show("joining", "Joining…");
  const agent = ua(wsUrl, query, name);
  whenConnected(agent, () => {
    if (state.status === "joining") call(agent, target, iceServers); // not when the page left meanwhile
  });
}

function call(agent, target, iceServers) {
  state.session = agent.call(target, {
    mediaConstraints: { audio: true, video: false },
    pcConfig: { iceServers: iceServers || [] },
    eventHandlers: {
      confirmed: () => {
        openFeed();
        listDevices();
      },
      ended: () => end("You left the meeting."),
      failed: (e) => {
        const why = failure(e);
        state.error = String(why);
        console.warn(`join failed (${e.originator}): ${why}`);
        end(`Could not join: ${why}`, "failed");
      },
    },
  });
  state.session.connection.addEventListener("track", (event) => measure($("remote"), event.streams[0] || new MediaStream([event.track]), heard));
}

async function joinAsGuest(event) {
  event.preventDefault();
  const name = $("name").value.trim();
  if (!name) {
    $("name").focus();
    return;
  }
  $("guest").disabled = true;
  try {
    const resp = await fetch("/web/join", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ thread: config.thread, displayName: name }),
    });
    const body = await resp.json();
    if (resp.status !== 201) throw new Error((body.error && body.error.message) || `HTTP ${resp.status}`);
    state.credential = `t:${body.ticket}`;
    join(body.target, body.wsUrl, `ticket=${encodeURIComponent(body.ticket)}`, name, body.iceServers);
  } catch (err) {
    state.error = String(err.message || err);
    show("failed", `Could not join: ${state.error}`);
  } finally {
    $("guest").disabled = false;
  }
}

// -- sign-in (authorization code + PKCE) -----------------------------------------------------------------------
const b64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const random = (n) => b64url(crypto.getRandomValues(new Uint8Array(n)));

async function signIn() {
  const verifier = random(32);
  const challenge = b64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  const saved = { verifier, state: random(16), thread: config.thread, subject: config.subject, tenant: config.tenant, clientId: config.clientId, target: config.target, wsUrl: config.wsUrl };
  sessionStorage.setItem(STORE, JSON.stringify(saved));
  const query = new URLSearchParams({
    client_id: saved.clientId,
    response_type: "code",
    redirect_uri: config.redirect,
    scope: "openid profile OnlineMeetings.Read",
    state: saved.state,
    code_challenge: challenge,
    code_challenge_method: "S256",
  });
  location.assign(`/${encodeURIComponent(saved.tenant)}/oauth2/v2.0/authorize?${query}`);
}

async function signedIn() {
  const params = new URLSearchParams(location.search);
  const saved = JSON.parse(sessionStorage.getItem(STORE) || "null");
  sessionStorage.removeItem(STORE);
  history.replaceState(null, "", location.pathname); // the code leaves the address bar
  if (!saved || params.get("state") !== saved.state) {
    show("failed", "This sign-in did not start here; open the meeting link again.");
    return;
  }
  $("title").textContent = saved.subject || "Online meeting";
  if (params.get("error") || !params.get("code")) {
    show("failed", `Sign-in failed: ${params.get("error_description") || params.get("error") || "no code"}`);
    return;
  }
  const form = new URLSearchParams({
    grant_type: "authorization_code",
    client_id: saved.clientId,
    code: params.get("code"),
    redirect_uri: config.redirect,
    code_verifier: saved.verifier,
  });
  const resp = await fetch(`/${encodeURIComponent(saved.tenant)}/oauth2/v2.0/token`, { method: "POST", body: form });
  const body = await resp.json();
  if (resp.status !== 200) {
    show("failed", `Sign-in failed: ${body.error_description || body.error || resp.status}`);
    return;
  }
  state.credential = `a:${body.access_token}`;
  join(saved.target, saved.wsUrl, `access_token=${encodeURIComponent(body.access_token)}`, "", []);
}

// -- in the meeting -------------------------------------------------------------------------------------------
function setMuted(muted, tell = true) {
  state.muted = muted;
  const pc = state.session && state.session.connection;
  if (pc) for (const sender of pc.getSenders()) if (sender.track) sender.track.enabled = !muted;
  $("mute").setAttribute("aria-pressed", String(muted));
  $("mute").textContent = muted ? "Unmute" : "Mute";
  if (tell && state.feed && state.feed.readyState === WebSocket.OPEN) state.feed.send(JSON.stringify({ type: "mute", muted }));
}

function leave() {
  if (state.session && !state.session.isEnded()) state.session.terminate();
  end("You left the meeting.");
}

function end(text, status = "left") {
  if (state.status === "left" || state.status === "failed") return;
  show(status, text);
  if (state.feed) state.feed.close();
  if (state.ua) state.ua.stop();
}

// RFC 4733 through the call's RTCDTMFSender. Keys pressed while others still sound wait in our own queue and go
// when the sender's buffer has drained (JsSIP's sendDTMF re-inserts the sender's buffer, which can still hold the
// key that is sounding: that key would be sent twice).
const keypad = { queue: "", playing: false };

function dial(key) {
  const pc = state.session && state.session.isEstablished() && state.session.connection;
  const sender = pc && pc.getSenders().find((s) => s.dtmf && s.track);
  if (!sender || !sender.dtmf.canInsertDTMF) return;
  keypad.queue += key;
  state.tones += key;
  if (!keypad.playing) sendKeys(sender.dtmf);
}

function sendKeys(dtmf) {
  if (!keypad.queue) {
    keypad.playing = false;
    return;
  }
  keypad.playing = true;
  dtmf.ontonechange = (event) => {
    if (event.tone === "") sendKeys(dtmf);
  };
  const keys = keypad.queue;
  keypad.queue = "";
  dtmf.insertDTMF(keys, 160, 100);
}

async function listDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  const fill = (select, kind) => {
    select.replaceChildren();
    for (const d of devices.filter((x) => x.kind === kind)) {
      const option = document.createElement("option");
      option.value = d.deviceId;
      option.textContent = d.label || `${kind === "audioinput" ? "Microphone" : "Speaker"} ${select.length + 1}`;
      select.appendChild(option);
    }
  };
  fill($("mic"), "audioinput");
  fill($("speaker-out"), "audiooutput");
  // a speaker can be chosen only where the browser lets a page pick its output (setSinkId)
  const outputs = Boolean($("remote").setSinkId) && $("speaker-out").length > 0;
  $("speaker-out").parentElement.classList.toggle("hidden", !outputs);
}

async function pickMicrophone() {
  const pc = state.session && state.session.connection;
  if (!pc) return;
  const stream = await navigator.mediaDevices.getUserMedia({ audio: { deviceId: { exact: $("mic").value } } });
  const track = stream.getAudioTracks()[0];
  track.enabled = !state.muted;
  for (const sender of pc.getSenders()) if (sender.track && sender.track.kind === "audio") await sender.replaceTrack(track);
}

async function pickSpeaker() {
  const audio = $("remote");
  if (audio.setSinkId) await audio.setSinkId($("speaker-out").value);
}

function setup() {
  const pad = $("dialpad");
  for (const key of "123456789*0#") {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = key;
    button.setAttribute("aria-label", `Dial ${key === "*" ? "star" : key === "#" ? "pound" : key}`);
    button.addEventListener("click", () => dial(key));
    pad.appendChild(button);
  }
  $("guest-form").addEventListener("submit", joinAsGuest);
  $("mute").addEventListener("click", () => setMuted(!state.muted));
  $("leave").addEventListener("click", leave);
  $("mic").addEventListener("change", () => pickMicrophone().catch((e) => console.warn(e)));
  $("speaker-out").addEventListener("change", () => pickSpeaker().catch((e) => console.warn(e)));
  document.addEventListener("keydown", (event) => {
    if (state.status !== "in-meeting" || event.target.tagName === "INPUT" || event.target.tagName === "SELECT") return;
    if (/^[0-9*#]$/.test(event.key)) dial(event.key);
  });
  window.addEventListener("pagehide", () => {
    if (state.session && !state.session.isEnded()) state.session.terminate();
  });
  if (!config.guests) {
    // guests may not join from the page here: only sign-in
    $("guest-form").querySelector("p").classList.add("hidden");
    $("guest").classList.add("hidden");
  }
  if (config.clientId) {
    $("signin").classList.remove("hidden");
    $("signin").addEventListener("click", () => signIn().catch((e) => show("failed", `Sign-in failed: ${e}`)));
  }
  if (!config.thread) {
    $("join").classList.add("hidden");
    signedIn().catch((e) => show("failed", `Sign-in failed: ${e}`));
  }
}

setup();
