"""Composition root: `Node` wires store, directory, tokens, calls, notifications and the HTTP server,
and owns every background task. Nothing else in the package imports this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import uvicorn

from opencomms import __version__
from opencomms._compiled import state as compiled_state
from opencomms.api import ApiContext, build_app
from opencomms.api.connections import default_max_connections
from opencomms.api.protocol import HttpGuard
from opencomms.api.throttle import Throttle
from opencomms.auth.keystore import load_keyring, rotate_if_due
from opencomms.auth.secretguard import SecretGuard, SecretGuardConfig
from opencomms.auth.signin import SignIn
from opencomms.auth.tokens import TokenService
from opencomms.calling.announcements import Announcer
from opencomms.calling.apphosted import AppHostedMedia
from opencomms.calling.hold_music import HoldMusicPlayer
from opencomms.calling.media import MediaService
from opencomms.calling.mediastreams import MediaStreams
from opencomms.calling.meeting_artifacts import attach_meeting_artifacts
from opencomms.calling.meeting_invites import ParticipantInvites
from opencomms.calling.meetings import ChainedLookup, InMemoryMeetings, LiveMeetingService
from opencomms.calling.quotas import CallQuotas
from opencomms.calling.recording_access import FailureLimits
from opencomms.calling.recordings import RecordingPolicy, RecordingStore
from opencomms.calling.service import CallService
from opencomms.calling.transcription import CallTranscription
from opencomms.calling.transcription import from_config as transcription_from_config
from opencomms.cluster.wiring import attach_cluster
from opencomms.config import NodeConfig
from opencomms.console.wiring import attach_console
from opencomms.directory import Directory
from opencomms.domain.legs import LegKind
from opencomms.gateway.dialin import DialIn, DialInEvents
from opencomms.gateway.moves import SipMoves
from opencomms.gateway.sip import SipGateway
from opencomms.media.budget import MemoryBudget
from opencomms.media.clock import EngineThread
from opencomms.media.engine import MediaEngine, MediaEvent, TalkerConfig
from opencomms.media.engine.commands import EngineCommand
from opencomms.media.feeds import feeds_of
from opencomms.media.fetch import FetchPolicy, SafeFetcher
from opencomms.media.prompts import PromptLibrary
from opencomms.media.taps import taps_of
from opencomms.media.voices import voices_from_config
from opencomms.mediahost.remote import MediaProcess
from opencomms.mediahost.streams import WorkerSettings
from opencomms.meetings.directory import MeetingDirectory
from opencomms.meetings.service import MeetingService
from opencomms.metrics.wiring import attach_metrics
from opencomms.net.egress import EgressPolicy, merge_allow
from opencomms.notify.dispatcher import Dispatcher
from opencomms.notify.retry import RetryPolicy
from opencomms.readiness import Readiness
from opencomms.rlimit import raise_descriptor_limit
from opencomms.store import Store, StoreUnavailable, open_store
from opencomms.store.conversations import conversations_beside
from opencomms.store.redis_common import redis_target
from opencomms.subscriptions.wiring import attach_call_records
from opencomms.web.wiring import attach_webrtc

log = logging.getLogger("opencomms.node")

KEY_MAINTENANCE_INTERVAL = 30.0
"""Seconds between keyring reloads (picks up `opencomms keys rotate`) and rotation checks."""


def freeze_process_heap() -> None:
    """For a process that runs one node until it exits (`opencomms serve`, a benchmark), once the node has started:
    collect, then freeze every object alive (the imports, the node's components) out of the collector's view, so
    that collections, which hold the GIL, scan only what calls create: fewer, shorter pauses of the media thread.
    Never from a process that starts and stops nodes (a test suite, an app embedding them): a frozen object is
    never collected, and each stopped node, its engine and its calls would stay for good."""
    gc.collect()
    gc.freeze()


class _GcThresholds:
    """Young collections every 10,000 allocations rather than 700 while nodes run in the process: at 200 calls/s
    the loop allocates so fast that the default ran the collector (GIL held) very often, for objects that mostly
    die by refcount anyway. The process's own thresholds are back once its last running node stops."""

    running = 0
    saved: tuple[int, int, int] | None = None

    @classmethod
    def started(cls) -> None:
        if cls.running == 0:
            cls.saved = gc.get_threshold()
        cls.running += 1
        gc.set_threshold(10_000, 20, 20)

    @classmethod
    def stopped(cls) -> None:
        cls.running -= 1
        if cls.running == 0 and cls.saved is not None:
            gc.set_threshold(*cls.saved)
            cls.saved = None


class Node:
    """One opencomms node. `async with Node(config) as node: await node.serve()`."""

    def __init__(self, config: NodeConfig, *, store: Store | None = None, clock: Callable[[], float] = time.time):
        self.config = config
        self.clock = clock
        self.store = (
            store
            if store is not None
            else open_store(
                config.store_url,
                busy_timeout=config.storage.busy_timeout,
                cluster=redis_target(config.store_url, config.cluster),
            )
        )
        self.directory = Directory(self.store, clock)
        self._sock: socket.socket | None = None
        self.port = config.port
        if config.port == 0 or not config.public_url:
            self._sock = self._bind()
            self.port = self._sock.getsockname()[1]
        self.public_url = config.base_url(self.port)
        self.keyring = load_keyring(self.store, clock(), config.tokens.key_file)
        tc = config.tokens
        self.tokens = TokenService(
            self.keyring,
            issuer_base=self.public_url,
            audiences=[self.public_url, *tc.audiences],
            access_token_lifetime=tc.access_token_lifetime,
            callback_issuer=tc.callback_issuer,
            callback_token_lifetime=tc.callback_token_lifetime,
        )
        mc = config.media
        self.egress = EgressPolicy(  # the one outbound-address policy (the media aliases are deprecated)
            merge_allow(config.egress.allow, mc.fetch_allow_private, mc.app_hosted_allow_private),
            resolve_timeout=config.egress.resolve_timeout,
        )
        lc = config.ledger
        self.conversations = conversations_beside(
            self.store,
            busy_timeout=lc.busy_timeout,
            max_batch=lc.max_batch,
            writer_thread=lc.writer_thread,
            group_window=lc.group_commit,
        )
        nc = config.notify
        self.dispatcher = Dispatcher(
            self.store,
            sign=lambda app_id, tenant_id: self.tokens.callback_token(app_id=app_id, tenant_id=tenant_id, now=clock()),
            policy=RetryPolicy(
                initial_delay=nc.initial_retry_delay,
                max_delay=nc.max_retry_delay,
                max_attempts=nc.max_attempts,
                max_age=nc.max_age,
            ),
            timeout=nc.timeout,
            max_in_flight=nc.max_in_flight,
            on_redirect=self._on_redirect,
            clock=clock,
            user_agent=f"opencomms/{__version__}",
            fault_retry=config.storage.fault_retry,
            egress=self.egress,
            outbox=self.conversations,
        )
        self.calls = CallService(
            self.store,
            self.directory,
            self.dispatcher,
            timeouts=config.calls,
            clock=clock,
            on_deadline=self._arm_timer,
            conversations=self.conversations,
            retries=lc.retries,
            cache_size=lc.cache_size,
        )
        self.calls.core.timers.fault_retry = config.storage.fault_retry
        self.engine: EngineThread | MediaProcess = self._media_engine(config)
        self.voices = voices_from_config(
            config.tts, espeak_executable=mc.tts_executable, max_prompt_seconds=mc.max_prompt_seconds
        )
        self.prompts = PromptLibrary(
            SafeFetcher(
                FetchPolicy(
                    max_bytes=mc.fetch_max_bytes,
                    timeout_seconds=mc.fetch_timeout,
                ),
                egress=self.egress,
            ),
            self.voices,
            max_prompt_seconds=mc.max_prompt_seconds,
            max_cache_bytes=mc.prompt_cache_mb << 20,
            budget=(prompt_budget := MemoryBudget(config.quotas.prompt_memory_mb << 20)),
            max_fetch_bytes=mc.fetch_max_bytes,
        )
        self.recordings = RecordingStore(
            mc.recordings_dir,
            self.store,
            policy=RecordingPolicy(
                token_seconds=mc.recording_token_lifetime,
                retention_seconds=mc.recording_retention,
                max_age_seconds=mc.recording_max_age,
            ),
            clock=clock,
            limits=FailureLimits(burst=mc.recording_failure_burst, per_minute=mc.recording_failures_per_minute),
        )
        self.media = MediaService(
            self.calls, _EnginePort(self.engine, mc.max_legs), self.prompts, self.recordings, public_url=self.public_url
        )
        self.media.configure_quotas(prompt_budget, config.quotas)
        self.calls.attach_media(self.media)
        self.app_hosted = AppHostedMedia(
            self.calls,
            _EnginePort(self.engine, mc.max_legs),
            connect_timeout=mc.app_hosted_connect_timeout,
            egress=self.egress,
        )
        self.media.observers.append(self.app_hosted)
        self.media_streams = MediaStreams(
            self.calls, _EnginePort(self.engine, mc.max_legs), config=config.streams, egress=self.egress
        )
        self.media.observers.append(self.media_streams)
        self.meeting_directory = MeetingDirectory(self.store)
        self.adhoc_meetings = InMemoryMeetings()
        """Meetings added by hand (the testing kit), found after the onlineMeeting resources."""
        self.live_meetings = LiveMeetingService(
            self.calls, ChainedLookup(self.meeting_directory, self.adhoc_meetings), config.meetings, clock=clock
        )
        self.live_meetings.attach_media(self.media)
        self.sip = SipGateway(config.sip, self.calls, self.directory, self.engine) if config.sip.enabled else None
        if self.sip is not None:
            self.calls.gateways.register(LegKind.SIP, self.sip)
        self.dialin, self.announcer = self._dial_in(config)
        self.invites = ParticipantInvites(self.calls)
        self.calls.subscribe(self.invites)
        if self.sip is not None:
            self.invites.attach_moves(SipMoves(self.sip), self.live_meetings, self.media)
        self._loop: asyncio.AbstractEventLoop | None = None
        th = config.throttle
        self.api = ApiContext(
            directory=self.directory,
            calls=self.calls,
            tokens=self.tokens,
            throttle=Throttle(th),
            public_url=self.public_url,
            media=self.media,
            live_meetings=self.live_meetings,
            invites=self.invites,
            quotas=CallQuotas(config.quotas, self.calls.calls),
            recordings=self.recordings,
            max_body_bytes=config.max_body_bytes,
            clock=clock,
            health=self.health,
            secrets=SecretGuard(
                SecretGuardConfig(
                    failed_burst=tc.failed_secret_burst,
                    failed_rate=tc.failed_secret_rate,
                    failed_burst_per_source=tc.failed_secret_burst_per_source,
                    failed_rate_per_source=tc.failed_secret_rate_per_source,
                    cache_seconds=tc.secret_cache_seconds,
                    max_checks=tc.max_secret_checks,
                    max_queued=tc.max_secret_checks_queued,
                )
            ),
            egress=self.egress,
            media_streams=self.media_streams,
        )
        self.meetings = MeetingService(
            self.meeting_directory, self.directory, config.meetings, public_url=self.public_url, clock=clock
        )
        self.meetings.live = self.live_meetings
        self.api.meetings = self.meetings
        self.api.signin = SignIn(config.signin, self.store)
        self.readiness = Readiness(self.store, self.engine, None if self.sip is None else self.sip.endpoint)
        self.api.ready = self.readiness.check
        self.transcription = self._transcription(config)
        self.meeting_artifacts = attach_meeting_artifacts(self)
        self.subscriptions = attach_call_records(self)
        self.app = build_app(self.api)
        self.metrics = attach_metrics(self) if config.metrics.enabled else None
        self.console = attach_console(self) if config.console.enabled else None
        self.webrtc = attach_webrtc(self) if config.webrtc.enabled and self.sip is not None else None
        self.cluster = attach_cluster(self)
        self.descriptor_limit = raise_descriptor_limit()
        self.http_guard = HttpGuard(
            config.http,
            max_body_bytes=config.max_body_bytes,
            max_connections=default_max_connections(config.http.max_connections, self.descriptor_limit),
            descriptor_limit=self.descriptor_limit,
        )
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._firing = False
        self._tasks: asyncio.TaskGroup | None = None
        self._keys_task: asyncio.Task[None] | None = None
        self._stack = contextlib.AsyncExitStack()
        self._server: uvicorn.Server | None = None

    def _media_engine(self, config: NodeConfig) -> EngineThread | MediaProcess:
        """The media engine's thread, or its child process with `[media] process`."""
        mc = config.media
        talkers = TalkerConfig(talkers=mc.conference_talkers, select_above=mc.conference_select_above)
        if mc.process:
            settings = WorkerSettings(
                capacity=mc.max_legs,
                inbound_queue_frames=mc.engine_inbound_queue_frames,
                talkers=talkers,
                max_lag_ticks=mc.engine_max_lag_ticks,
                realtime_priority=mc.realtime_priority or None,
                latency_slice=mc.latency_slice_ms / 1000.0 or None,
                bank_capacity=max(16, min(1024, config.sip.max_calls)),  # as SipGateway sizes its own bank
                log_level=logging.getLogger("opencomms").getEffectiveLevel(),
            )
            return MediaProcess(settings, on_events=lambda events: self.media.on_events(events))
        thread = EngineThread(
            MediaEngine(capacity=mc.max_legs, inbound_queue_frames=mc.engine_inbound_queue_frames, talkers=talkers),
            on_events=self._on_media_events,
            max_lag_ticks=mc.engine_max_lag_ticks,
            realtime_priority=mc.realtime_priority or None,
            latency_slice=mc.latency_slice_ms / 1000.0 or None,
        )
        thread.after_tick.append(taps_of(thread.engine).drain)  # the app-hosted legs' frames join each tick's events
        thread.after_tick.append(feeds_of(thread.engine).drain)  # and the node-side feeds' (transcription, streams)
        return thread

    def _dial_in(self, config: NodeConfig) -> tuple[DialIn | None, Announcer]:
        """Phones join meetings (dial-in attendant, softphones by SIP address) and hear their announcements."""
        announcer = Announcer(
            self.calls, self.live_meetings.lookup, self.prompts, self.media.engine, voice=config.meetings.dial_in_voice
        )
        self.calls.subscribe(announcer)
        self.hold_music = HoldMusicPlayer(self.prompts, self.media.engine)
        self.calls.subscribe(self.hold_music)
        if self.sip is None:
            return None, announcer
        dialin = DialIn(self.sip, self.live_meetings, self.prompts, config.meetings)
        self.sip.dialin = dialin
        self.media.observers.append(dialin)
        self.calls.subscribe(DialInEvents(dialin))
        return dialin, announcer

    def _transcription(self, config: NodeConfig) -> CallTranscription | None:
        """Live transcription when `[speech] enabled` (a missing package or model stops the start)."""
        if not config.speech.enabled:
            return None
        transcription = transcription_from_config(
            self.calls, _EnginePort(self.engine, config.media.max_legs), config.speech
        )
        transcription.meetings = self.live_meetings.lookup
        self.media.observers.append(transcription)
        self.calls.subscribe(transcription)
        self.api.transcription = transcription
        return transcription

    # -- lifecycle ---------------------------------------------------------------------------------------
    async def __aenter__(self) -> Node:
        self._loop = asyncio.get_running_loop()
        self._stack.push_async_callback(self.conversations.aclose)  # last: everything before may still write
        self._stack.push_async_callback(self.calls.aclose)
        self.engine.start()
        self._stack.callback(self.engine.stop)
        if isinstance(self.engine, MediaProcess):
            await self.engine.wait_ready()
        self._stack.push_async_callback(self.app_hosted.close)
        self._stack.push_async_callback(self.media_streams.close)
        self._stack.push_async_callback(self.voices.close)  # after the prompts close: their renders are cancelled
        if self.transcription is not None:
            self._stack.push_async_callback(self.transcription.close)
        self._stack.callback(self.meeting_artifacts.close)  # after transcription: its last captions are in
        self._stack.push_async_callback(self.prompts.close)
        self._stack.push_async_callback(self.media.aclose)  # before the prompts close: its loads await them
        self.recordings.remove_partial()
        await self._stack.enter_async_context(self.dispatcher)
        await self.calls.start()  # nothing loaded: conversations come in on demand, timers from the store's index
        await self.media.load()
        if self.sip is not None:
            await self.sip.start()
            self._stack.push_async_callback(self.sip.close)
        if self.webrtc is not None:  # after the gateway: its WebSockets feed the gateway's endpoint
            await self.webrtc.start()
            self._stack.push_async_callback(self.webrtc.close)
        if self.dialin is not None:
            self._stack.push_async_callback(self.dialin.close)  # before the gateway closes (LIFO)
            if self.config.meetings.dial_in_number:  # a node that answers a dial-in number: its callers wait not
                self.dialin.prefetch()
        self._stack.push_async_callback(self.announcer.close)
        self._stack.push_async_callback(self.hold_music.close)
        self._stack.push_async_callback(self.invites.close)
        if self.cluster is not None:
            await self.cluster.start(self._stack)
        self._tasks = await self._stack.enter_async_context(asyncio.TaskGroup())
        self._keys_task = self._tasks.create_task(self._maintenance(), name="opencomms-maintenance")
        if self.config.tts.piper_preload:
            self._tasks.create_task(self.voices.preload(), name="opencomms-piper-preload")
        self._stack.callback(self._cancel_timer)
        deadline = self.calls.next_deadline()
        if deadline is not None:
            self._arm_timer(deadline)
        _GcThresholds.started()  # rarer young collections (a process running one node also freezes its start-up
        self._stack.callback(_GcThresholds.stopped)  # objects: `freeze_process_heap`, the caller's business)
        log.info(
            "node started (open-descriptor limit %d, HTTP connection cap %d, media path %s)",
            self.descriptor_limit,
            self.http_guard.book.max_total,
            compiled_state(),
            extra={"url": self.public_url, "calls": self.calls.active_calls},
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._keys_task is not None:
            self._keys_task.cancel()
        await self._stack.aclose()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self.store.close()

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "calls": self.calls.active_calls,
            "notifications": dataclasses.asdict(self.dispatcher.stats),
            "media": {**self.media.stats, **self.engine.stats(), "path": compiled_state()},
            "app_hosted_media": {"active": self.app_hosted.active, **dataclasses.asdict(self.app_hosted.stats)},
            "sip": None if self.sip is None else self.sip.health(),
            "webrtc": None if self.webrtc is None else self.webrtc.health(),
            "store": {"unit_faults": self.calls.faults, "notify_faults": self.dispatcher.store_faults},
            "http": self.http_guard.stats(),
            "transcription": None if self.transcription is None else self.transcription.health(),
            "cluster": {"role": "single"} if self.cluster is None else self.cluster.health(),
        }

    # -- HTTP server -------------------------------------------------------------------------------------
    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # so asyncio sets TCP_NODELAY
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.config.host, self.config.port))
        sock.set_inheritable(True)
        return sock

    async def serve(self, ready: Callable[[Node], None] | None = None) -> None:
        """Serve HTTP(S) until stopped (SIGINT/SIGTERM when run from the CLI, or `stop()`)."""
        cfg = uvicorn.Config(
            self.app,
            lifespan="off",
            log_config=None,
            access_log=False,
            http=self.http_guard.protocol_class(),
            ws="none",  # the API serves no WebSocket; an upgraded connection would leave the HTTP limits' view
            loop="none",
            ssl_certfile=self.config.tls_cert or None,
            ssl_keyfile=self.config.tls_key or None,
            timeout_keep_alive=self.config.http.keepalive_timeout,  # type: ignore[arg-type]
            timeout_graceful_shutdown=5,
            backlog=2048,
        )
        self._server = _Server(
            cfg, lambda: ready(self) if ready is not None else None, handshake_timeout=self.config.http.header_timeout
        )
        sock = self._sock or self._bind()
        self._sock = sock
        self.http_guard.start(asyncio.get_running_loop())
        try:
            await self._server.serve(sockets=[sock])
        finally:
            self.http_guard.stop()

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True

    # -- timers and maintenance --------------------------------------------------------------------------
    def _arm_timer(self, deadline: float) -> None:
        if self._timer_at is not None and self._timer_at <= deadline and self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not started yet: __aenter__ arms the earliest deadline
        self._cancel_timer()
        self._timer_at = deadline
        self._timer = loop.call_at(loop.time() + max(0.0, deadline - self.clock()), self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_at = None

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        if self._firing or self._tasks is None:
            return  # the run under way re-arms when it ends
        self._firing = True
        self._tasks.create_task(self._fire_timers(), name="opencomms-timers")

    async def _fire_timers(self) -> None:
        try:
            await self.calls.fire_due(self.clock())
        except Exception:
            log.exception("timer processing failed")
        finally:
            self._firing = False
        deadline = self.calls.next_deadline()
        if deadline is not None:
            self._arm_timer(deadline)

    def _on_redirect(self, call_id: str, url: str) -> None:
        if self._tasks is not None:
            self._tasks.create_task(self._move_callback(call_id, url), name="opencomms-move-callback")

    async def _move_callback(self, call_id: str, url: str) -> None:
        try:
            await self.calls.move_callback(call_id, url)
        except Exception:
            log.exception("the call's callback could not be moved", extra={"call_id": call_id})

    def _on_media_events(self, events: list[MediaEvent]) -> None:
        """Called on the engine thread: hand the events to the media service on the event loop."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
                loop.call_soon_threadsafe(self.media.on_events, events)

    async def _maintenance(self) -> None:
        tc = self.config.tokens
        while True:
            await asyncio.sleep(KEY_MAINTENANCE_INTERVAL)
            try:
                live = set(self.calls.calls) if self.cluster is None else await self.cluster.live_recorded_calls()
                with self.store.transaction():
                    self.recordings.purge_due(live_calls=live)
                    self.meeting_artifacts.artifacts.purge_due()
            except StoreUnavailable as exc:
                log.warning("recording clean-up postponed: %s", exc.message)
            except Exception:
                log.exception("recording clean-up failed")
            try:
                fresh = load_keyring(self.store, self.clock(), tc.key_file)
                self.keyring.replace_keys(fresh.keys)
                rotate_if_due(
                    self.store,
                    self.keyring,
                    self.clock(),
                    tc.key_rotation_interval,
                    self.tokens.max_token_lifetime,
                    tc.key_file,
                )
            except StoreUnavailable as exc:
                log.warning("key maintenance postponed: %s", exc.message)
            except Exception:
                log.exception("key maintenance failed")


class _EnginePort:
    """The media service's view of the engine thread: its capacity, and commands run on its thread."""

    def __init__(self, thread: EngineThread | MediaProcess, capacity: int) -> None:
        self._thread = thread
        self.capacity = capacity
        self.shares_process = isinstance(thread, EngineThread)

    def call(self, command: EngineCommand[None]) -> None:
        self._thread.call(command)


class _Server(uvicorn.Server):
    """uvicorn's server, telling us when it listens; over TLS, a client must finish its handshake within
    `handshake_timeout` (asyncio's default is 60 s, during which a silent connection holds a descriptor). A stop
    takes effect at once: uvicorn noticed `should_exit` at its next 0.1 s tick, then paused 0.1 s for connections
    to finish even when there were none (0.2 s of every node's stop)."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None], handshake_timeout: float = 60.0):
        self._exit = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._should_exit = False
        super().__init__(config)
        self._on_started = on_started
        self._handshake_timeout = handshake_timeout

    @property  # type: ignore[override]
    def should_exit(self) -> bool:
        return self._should_exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:  # by `Node.stop()` or uvicorn's signal handler
        self._should_exit = value
        if value and self._loop is not None:  # thread- and signal-safe, and wakes the loop
            self._loop.call_soon_threadsafe(self._exit.set)

    async def main_loop(self) -> None:
        """uvicorn's loop of 0.1 s ticks, ended as soon as `should_exit` is set rather than at the next tick."""
        self._loop = asyncio.get_running_loop()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):
                    await self._exit.wait()
            should_exit = await self.on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.server_state.connections:  # uvicorn's: each finishes its response, within the graceful timeout
            await super().shutdown(sockets)
            return
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for server in self.servers:
            await server.wait_closed()
        if not self.force_exit:
            await self.lifespan.shutdown()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        config = self.config
        if sockets is None or config.ssl is None:
            await super().startup(sockets)
        else:  # uvicorn's own path for given sockets, plus the handshake timeout it does not expose
            await self.lifespan.startup()
            state = self.lifespan.state

            def create_protocol(_loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
                return config.http_protocol_class(  # type: ignore[call-arg]
                    config=config, server_state=self.server_state, app_state=state, _loop=_loop
                )

            loop = asyncio.get_running_loop()
            self.servers = [
                await loop.create_server(
                    create_protocol,
                    sock=sock,
                    ssl=config.ssl,
                    backlog=config.backlog,
                    ssl_handshake_timeout=self._handshake_timeout,
                )
                for sock in sockets
            ]
            self.started = True
        if self.started:
            self._on_started()
