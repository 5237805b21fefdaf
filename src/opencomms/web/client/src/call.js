// The /web/call page: one button calls the ticket's SIP address over SIP-over-WebSocket (JsSIP), one hangs up.
// The ticket, target and name come in the URL fragment (never sent to a server); the WebSocket URL in the page.
// The level of the received audio is measured with a WebAudio AnalyserNode (shown in the meter, and readable by
// tests as window.opencommsCall.level()).
import { $, codecs, failure, measure, userAgent, whenConnected } from "./common.js";

const config = $("call-config").dataset;
const params = new URLSearchParams(location.hash.slice(1));
const ticket = params.get("ticket") || "";
const target = params.get("target") || "";
const name = params.get("name") || "Guest";
const iceServers = (() => {
  // STUN/TURN servers (TURN with time-limited credentials) from the ticket, base64url JSON in the fragment
  const raw = params.get("ice");
  if (!raw) return [];
  try {
    return JSON.parse(atob(raw.replace(/-/g, "+").replace(/_/g, "/")));
  } catch {
    return [];
  }
})();

const state = { ua: null, session: null, peak: 0, rms: 0, status: "ready", error: "", clicked: 0, heard: 0 };
window.opencommsCall = {
  status: () => state.status,
  error: () => state.error,
  level: () => ({ peak: state.peak, rms: state.rms }),
  // milliseconds from the click on Call to the first audible frame received (0: none yet)
  joinMs: () => (state.heard ? state.heard - state.clicked : 0),
  codecs: () => codecs(state.session),
};

function show(status, text) {
  state.status = status;
  $("status").textContent = text;
  $("call").disabled = status === "calling" || status === "in-call";
  $("hangup").disabled = !(status === "calling" || status === "in-call");
}

function heard(rms, peak) {
  if (!state.heard && rms > 0.01) state.heard = performance.now();
  state.peak = Math.max(state.peak, peak);
  state.rms = Math.max(state.rms, rms);
  $("level").value = Math.min(1, rms * 4);
}

function ua() {
  if (!state.ua) {
    const url = `${config.wsUrl}?ticket=${encodeURIComponent(ticket)}`;
    state.ua = userAgent(url, "sip:guest@opencomms.invalid", name, () => {
      if (state.status === "calling" || state.status === "in-call") show("ended", "Connection lost.");
    });
  }
  return state.ua;
}

function call() {
  if (!ticket || !target) {
    show("error", "This page needs a call link with a ticket.");
    return;
  }
  show("calling", `Calling ${target}…`);
  state.clicked = performance.now();
  state.heard = 0;
  const agent = ua();
  whenConnected(agent, () => {
    if (state.status === "calling") dial(agent);
  });
}

function dial(agent) {
  state.session = agent.call(target, {
    mediaConstraints: { audio: true, video: false },
    pcConfig: { iceServers },
    eventHandlers: {
      confirmed: () => show("in-call", "In call."),
      ended: () => show("ended", "Call ended."),
      failed: (e) => {
        const why = failure(e);
        state.error = String(why);
        show("failed", `Call failed: ${why}`);
      },
    },
  });
  state.session.connection.addEventListener("track", (event) => {
    const stream = event.streams[0] || new MediaStream([event.track]);
    measure($("remote"), stream, heard);
  });
}

function hangup() {
  if (state.session && !state.session.isEnded()) state.session.terminate();
}

$("target-name").textContent = target.replace(/^sip:/, "");
$("call").addEventListener("click", call);
$("hangup").addEventListener("click", hangup);
window.addEventListener("pagehide", hangup);
