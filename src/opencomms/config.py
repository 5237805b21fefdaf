"""Typed node configuration: frozen dataclasses with a docstring per field, loaded from a TOML file and
from OPENCOMMS_* environment variables (`OPENCOMMS_PORT`, `OPENCOMMS_CALLS__ANSWER_TIMEOUT`, …).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class CallsConfig:
    answer_timeout: float = 15.0
    """Seconds an incoming call rings before it is dropped (Graph: 15 s)."""
    keepalive_timeout: float = 2700.0
    """Seconds without keepAlive before a call ends with 408/8537 (Graph: 45 min)."""


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
    """Lifetime of access tokens, in seconds."""
    callback_token_lifetime: float = 3600.0
    """Lifetime of the tokens that sign notifications to bots, in seconds."""
    callback_issuer: str = "https://api.botframework.com"
    """`iss` of callback tokens. Microsoft's value, so existing bot validators only change the metadata URL."""
    key_rotation_interval: float = 30 * 86400.0
    """Seconds between automatic signing-key rotations (retired keys stay published until their tokens expire)."""
    audiences: tuple[str, ...] = ("https://graph.microsoft.com",)
    """Token audiences accepted besides the node's own public URL (scope `<audience>/.default`)."""


@dataclass(frozen=True, slots=True)
class ThrottleSettings:
    rate: float = 3333.0
    """Requests per second per application (Graph: 50 000 per 15 s)."""
    burst: float = 5000.0
    """Requests an idle application may send at once."""
    enabled: bool = True
    """Set false to disable throttling."""


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
    """Where recordResponse files are written (relative to the working directory)."""
    recording_token_lifetime: float = 3600.0
    """Seconds a recordingAccessToken stays valid."""
    recording_retention: float = 3600.0
    """Seconds a recording is kept after its call ends."""
    recording_max_age: float = 86400.0
    """Seconds after which a recording is deleted even if its call is still going on."""
    app_hosted_connect_timeout: float = 10.0
    """Seconds the node keeps trying to reach an application-hosted call's media WebSocket (and allows one
    reconnect after a drop) before the call ends with 410/9140 (410/9141 after a drop)."""
    app_hosted_allow_private: tuple[str, ...] = ()
    """Deprecated alias, merged into egress.allow (which covers every outbound connection): hosts or CIDRs
    allowed although private or loopback."""
    realtime_priority: int = 0
    """SCHED_FIFO priority (1-99) for the media engine thread, as media servers run their media threads, so that other
    processes on the core cannot delay a tick (Linux; needs root or CAP_SYS_NICE, else a warning and normal
    scheduling). 0 keeps normal scheduling."""


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
    media_timeout: float = 30.0
    """Seconds without RTP from an answered phone after which its call ends (410/301005)."""
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
    """memory:// or sqlite:///path.db (relative to the working directory)."""
    max_body_bytes: int = 1 << 20
    """Largest accepted request body, in bytes (larger: 413)."""
    log_level: str = "info"
    """debug, info, warning or error."""
    log_format: str = "json"
    """json (one object per line) or text."""
    calls: CallsConfig = field(default_factory=CallsConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    tokens: TokensConfig = field(default_factory=TokensConfig)
    throttle: ThrottleSettings = field(default_factory=ThrottleSettings)
    media: MediaConfig = field(default_factory=MediaConfig)
    sip: SipConfig = field(default_factory=SipConfig)
    egress: EgressConfig = field(default_factory=EgressConfig)

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert and self.tls_key)

    def base_url(self, bound_port: int | None = None) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        scheme = "https" if self.tls else "http"
        host = "localhost" if self.tls and self.host in ("127.0.0.1", "0.0.0.0") else self.host
        return f"{scheme}://{host}:{bound_port or self.port}"


def _coerce(kind: Any, value: Any, name: str) -> Any:
    origin = typing.get_origin(kind)
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else list(value)
        return tuple(str(i).strip() for i in items if str(i).strip())
    if kind is bool:
        if isinstance(value, bool):
            return value
        return str(value).strip().lower() in ("1", "true", "yes", "on")
    if kind in (int, float, str):
        try:
            return kind(value)
        except (TypeError, ValueError):
            raise ValueError(f"configuration {name}: {value!r} is not a valid {kind.__name__}") from None
    if isinstance(kind, types.UnionType):
        return value
    return value


def _build(cls: Any, data: dict[str, Any], env: dict[str, str], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        env_name = f"{prefix}{f.name.upper()}"
        if dataclasses.is_dataclass(kind):
            section = data.get(f.name, {})
            if not isinstance(section, dict):
                raise ValueError(f"configuration [{f.name}] must be a table")
            kwargs[f.name] = _build(kind, section, env, f"{env_name}__")
            continue
        if env_name in env:
            kwargs[f.name] = _coerce(kind, env[env_name], env_name)
        elif f.name in data:
            kwargs[f.name] = _coerce(kind, data[f.name], f.name)
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"unknown configuration keys: {', '.join(sorted(unknown))}")
    return cls(**kwargs)


def load_config(path: str | Path | None = None, env: dict[str, str] | None = None, **overrides: Any) -> NodeConfig:
    """File < environment < explicit overrides (CLI flags). Unknown keys are an error, not silently ignored."""
    data: dict[str, Any] = {}
    if path:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    config: NodeConfig = _build(NodeConfig, data, dict(os.environ if env is None else env), "OPENCOMMS_")
    changes = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(config, **changes) if changes else config
