// What the call page (call.js) and the meeting page (meeting.js) share: the element lookup, the JsSIP user agent
// over SIP-over-WebSocket (no registration, no session timers, one reconnection attempt a minute), the reason a
// call failed, the codecs in use, and the level of the received audio (a WebAudio AnalyserNode, every 50 ms).
// esbuild bundles it into each page's script.
import * as JsSIP from "jssip";

export const $ = (id) => document.getElementById(id);

export function userAgent(url, uri, name, onDisconnected) {
  const agent = new JsSIP.UA({
    sockets: [new JsSIP.WebSocketInterface(url)],
    uri,
    display_name: name,
    register: false,
    session_timers: false,
    connection_recovery_min_interval: 60,
    connection_recovery_max_interval: 60,
  });
  agent.on("disconnected", onDisconnected);
  agent.start();
  return agent;
}

// Run `start` once the agent's WebSocket is open: JsSIP sends the INVITE as soon as the offer is ready and fails the
// call ("Canceled") when the socket is still connecting, which a busy node or network makes happen.
export function whenConnected(agent, start) {
  if (agent.isConnected()) start();
  else agent.once("connected", start);
}

// the node's Warning header on a failed INVITE, else JsSIP's cause
export const failure = (e) => (e.message && e.message.getHeader && e.message.getHeader("Warning")) || e.cause || "failed";

export async function codecs(session) {
  const pc = session && session.connection;
  if (!pc) return [];
  const stats = await pc.getStats();
  return [...stats.values()].filter((s) => s.type === "codec").map((s) => s.mimeType);
}

// Play the received stream in the <audio> element and call onLevel(rms, peak) every 50 ms with its level.
export function measure(audio, stream, onLevel) {
  audio.srcObject = stream; // Chrome feeds WebAudio from a remote track only while an element plays it
  const context = new AudioContext();
  const analyser = context.createAnalyser();
  analyser.fftSize = 2048;
  context.createMediaStreamSource(stream).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  const tick = () => {
    analyser.getFloatTimeDomainData(samples);
    let peak = 0;
    let sum = 0;
    for (const s of samples) {
      peak = Math.max(peak, Math.abs(s));
      sum += s * s;
    }
    onLevel(Math.sqrt(sum / samples.length), peak);
  };
  context.resume().then(() => setInterval(tick, 50));
}
