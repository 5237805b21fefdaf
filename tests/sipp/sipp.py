"""Run SIPp (Debian package ``sip-tester``) from Python on loopback, and read back what it measured.

* :func:`run_sipp` runs a client scenario to completion against ``target_host:target_port`` and returns a
  :class:`SippResult`: exit code, successful/failed call counts and every other cumulative counter (from the
  ``-trace_stat`` CSV), response times per call (from ``-trace_rtt``), unexpected messages (``-trace_err``).
* :class:`SippServer` runs a server scenario (``-sn uas`` or one of our ``uas_*.xml``) in the background, e.g. as
  the far end of the gateway, and hands the same result when it ends.
* :func:`check_scenario` tells whether sipp accepts a scenario file (XML, keywords, referenced pcap files).

Everything binds 127.0.0.1 only: SIP (``-i`` + ``-bind_local``), media (``-mi``) and sipp's UDP control socket
(``-ci``, which otherwise listens on every interface). The local SIP port is a free port chosen here (without
``-p``, sipp takes 5060, or the next free one, which would collide with a gateway on 5060). The media port is
sipp's own choice: it starts at 6000 (``-mp``) and moves up by 2 while ports are taken. Each run gets its own
working directory (sipp writes its logs into the current directory), kept in :attr:`SippResult.workdir`.

Scenario names: a path, a file name of this directory (``"uac_basic.xml"``), or a built-in name (``"uas"``).
sipp's exit codes: 0 every call succeeded, 1 some failed, 97 stopped by an internal command, 99 ended without
any call, 255 fatal error or ``-timeout`` reached (we pass ``-timeout_error``), 254 cannot bind its socket.
"""

from __future__ import annotations

import csv
import errno
import io
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from tests.ports import LOOPBACK, free_port

__all__ = [
    "BUILTIN_SCENARIOS",
    "SCENARIO_DIR",
    "WORKDIR_BASE",
    "SippError",
    "SippResult",
    "SippServer",
    "check_scenario",
    "free_port",
    "run_sipp",
    "sipp_available",
]

SCENARIO_DIR = Path(__file__).resolve().parent
BUILTIN_SCENARIOS = frozenset(
    {"uac", "uas", "regexp", "branchc", "branchs", "uac_pcap", "3pcc-C-A", "3pcc-C-B", "3pcc-A", "3pcc-B"}
)
_TRANSPORTS = frozenset({"u1", "un", "ui", "t1", "tn", "l1", "ln", "s1", "sn"})
_GRACE = 10.0  # seconds beyond sipp's own -timeout before we kill it

WORKDIR_BASE: Path | None = None
"""Where runs without an explicit ``workdir`` get their directory (None: the system temp dir). Tests point it at
pytest's ``tmp_path``, which pytest cleans up."""


class SippError(RuntimeError):
    """sipp could not be started or did not behave (not: a scenario failed, which is a result)."""


def sipp_available() -> bool:
    return shutil.which("sipp") is not None


@dataclass(frozen=True)
class SippResult:
    """What one sipp run did. ``stats`` holds the final cumulative counters of ``-trace_stat`` (names without
    the ``(C)`` suffix, values as sipp wrote them); ``response_times_ms`` the per-call samples of ``-trace_rtt`` by
    response-time name (the scenario's ``rtd="..."``; sipp's resolution is 1 ms)."""

    returncode: int
    successful: int
    failed: int
    stats: dict[str, str]
    response_times_ms: dict[str, list[float]]
    command: tuple[str, ...]
    workdir: Path
    stdout: str = ""
    stderr: str = ""
    errors: str = ""
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        """Every call succeeded, at least one did, and sipp said so."""
        return self.returncode == 0 and self.failed == 0 and self.successful > 0

    def counter(self, name: str) -> int:
        """A cumulative counter as a number, e.g. ``counter("FailedTimeoutOnRecv")``; 0 when absent."""
        try:
            return int(float(self.stats.get(name, "0") or 0))
        except ValueError:
            return 0

    def average_response_ms(self, name: str | None = None) -> float | None:
        """Mean of the ``-trace_rtt`` samples of one response time (or of all of them)."""
        samples = (
            self.response_times_ms.get(name, [])
            if name
            else [x for values in self.response_times_ms.values() for x in values]
        )
        return sum(samples) / len(samples) if samples else None

    def describe(self) -> str:
        """A multi-line summary for assertion messages."""
        failures = {k: v for k, v in self.stats.items() if k.startswith("Failed") and v not in ("", "0")}
        lines = [
            "$ " + " ".join(self.command),
            f"returncode={self.returncode} successful={self.successful} failed={self.failed}"
            + (" (killed: timeout)" if self.timed_out else ""),
            f"failures={failures}" if failures else "",
            f"workdir={self.workdir}",
            "stderr: " + _tail(self.stderr),
            "unexpected messages: " + _tail(self.errors) if self.errors else "",
        ]
        return "\n".join(line for line in lines if line)


def _listening(port: int, tcp: bool) -> bool:
    """Whether something listens on 127.0.0.1:port. Reads /proc/net (no probe bind that could race sipp's own);
    elsewhere, falls back to trying to bind the port."""
    table = Path("/proc/net/tcp" if tcp else "/proc/net/udp")
    if table.exists():
        wanted = f"0100007F:{port:04X}"
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 3 and fields[1] == wanted and (not tcp or fields[3] == "0A"):  # 0A: LISTEN
                return True
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def _tail(text: str, limit: int = 1500) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def _scenario_args(scenario: str | os.PathLike[str]) -> list[str]:
    name = os.fspath(scenario)
    if name in BUILTIN_SCENARIOS:
        return ["-sn", name]
    path = Path(name)
    if not path.exists() and (SCENARIO_DIR / name).exists():
        path = SCENARIO_DIR / name
    if not path.is_file():
        raise SippError(f"no scenario {name!r} (neither a file, a file of {SCENARIO_DIR}, nor built in)")
    return ["-sf", str(path.resolve())]


def _common_args(
    *,
    local_port: int,
    transport: str,
    calls: int | None,
    timeout: float,
    keys: Mapping[str, str] | None,
    extra_args: Sequence[str],
) -> list[str]:
    if transport not in _TRANSPORTS:
        raise SippError(f"transport {transport!r}: one of {sorted(_TRANSPORTS)}")
    args = [
        "-i", LOOPBACK, "-bind_local", "-mi", LOOPBACK, "-ci", LOOPBACK,
        "-p", str(local_port), "-t", transport,
        "-nostdin",
        "-timeout", f"{max(1, round(timeout))}s", "-timeout_error",
        "-trace_stat", "-stf", "stats.csv",
        "-trace_err", "-error_file", "errors.log",
        "-trace_rtt", "-rtt_freq", "1",
        "-trace_screen", "-screen_file", "screen.log",
    ]  # fmt: skip
    if calls is not None:
        args += ["-m", str(calls)]
    for key, value in (keys or {}).items():
        args += ["-key", key, str(value)]
    return args + list(extra_args)


def _workdir(workdir: str | os.PathLike[str] | None, prefix: str) -> Path:
    if workdir is not None:
        path = Path(workdir)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return Path(tempfile.mkdtemp(prefix=f"sipp-{prefix}-", dir=WORKDIR_BASE))


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _parse_stats(text: str) -> dict[str, str]:
    rows = [row for row in csv.reader(io.StringIO(text), delimiter=";") if row]
    if len(rows) < 2:
        return {}
    header, last = rows[0], rows[-1]
    return {name[: -len("(C)")]: value for name, value in zip(header, last, strict=False) if name.endswith("(C)")}


def _parse_rtt(workdir: Path) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {}
    for path in sorted(workdir.glob("*_rtt.csv")):
        for row in csv.reader(io.StringIO(_read(path)), delimiter=";"):
            if len(row) < 3 or row[0].startswith("Date"):
                continue
            try:
                samples.setdefault(row[2], []).append(float(row[1]))
            except ValueError:
                continue
    return samples


def _result(
    command: Sequence[str], workdir: Path, returncode: int, stdout: str, stderr: str, timed_out: bool
) -> SippResult:
    stats = _parse_stats(_read(workdir / "stats.csv"))

    def count(name: str) -> int:
        try:
            return int(stats.get(name, "0") or 0)
        except ValueError:
            return 0

    return SippResult(
        returncode=returncode,
        successful=count("SuccessfulCall"),
        failed=count("FailedCall"),
        stats=stats,
        response_times_ms=_parse_rtt(workdir),
        command=tuple(command),
        workdir=workdir,
        stdout=stdout,
        stderr=stderr,
        errors=_read(workdir / "errors.log"),
        timed_out=timed_out,
    )


def run_sipp(
    scenario: str | os.PathLike[str],
    target_host: str,
    target_port: int,
    *,
    calls: int = 1,
    rate: float | None = None,
    transport: str = "u1",
    timeout: float = 30.0,
    service: str | None = None,
    local_port: int | None = None,
    call_duration_ms: int | None = None,
    recv_timeout_ms: int | None = None,
    max_concurrent: int | None = None,
    keys: Mapping[str, str] | None = None,
    workdir: str | os.PathLike[str] | None = None,
    extra_args: Sequence[str] = (),
    new_session: bool = False,
) -> SippResult:
    """Run a client scenario until ``calls`` calls are done (``-m``) or ``timeout`` seconds have passed.

    ``rate``: calls per second (``-r``; sipp's default is 10). ``service``: user part of the Request-URI
    (``-s``; sipp's default is ``service``). ``call_duration_ms``: length of the scenarios' ``<pause/>`` (``-d``).
    ``recv_timeout_ms``: how long any expected message may take before the call fails (``-recv_timeout``).
    ``max_concurrent``: ``-l``. ``keys``: ``-key name value`` for ``[name]`` in the scenario (e.g.
    ``auth_user``/``auth_pass`` of uac_register.xml). ``extra_args`` go last, verbatim. ``new_session``: sipp in
    a session (so a scheduling autogroup) of its own, as a separate program would be.
    A scenario failure is a result (``ok`` false), never an exception; :class:`SippError` means sipp is missing or
    the arguments are wrong.
    """
    binary = shutil.which("sipp")
    if binary is None:
        raise SippError("sipp is not installed (Debian package sip-tester)")
    if calls < 1:
        raise SippError("calls must be positive")
    command = [binary, f"{target_host}:{target_port}", *_scenario_args(scenario)]
    options = list(extra_args)
    if rate is not None:
        options = ["-r", f"{rate:g}", *options]
    if service is not None:
        options = ["-s", service, *options]
    if call_duration_ms is not None:
        options = ["-d", str(call_duration_ms), *options]
    if recv_timeout_ms is not None:
        options = ["-recv_timeout", str(recv_timeout_ms), *options]
    if max_concurrent is not None:
        options = ["-l", str(max_concurrent), *options]
    command += _common_args(
        local_port=local_port or free_port(),
        transport=transport,
        calls=calls,
        timeout=timeout,
        keys=keys,
        extra_args=options,
    )
    run_dir = _workdir(workdir, Path(os.fspath(scenario)).stem)
    try:
        completed = subprocess.run(
            command,
            cwd=run_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout + _GRACE,
            check=False,
            start_new_session=new_session,
        )
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return _result(command, run_dir, -signal.SIGKILL, stdout, stderr, timed_out=True)
    return _result(command, run_dir, completed.returncode, completed.stdout, completed.stderr, timed_out=False)


@dataclass
class SippServer:
    """A sipp server scenario in the background, listening on 127.0.0.1:``port``.

    ``with SippServer("uas", calls=1) as server: run_sipp(..., LOOPBACK, server.port)``; after the block (or
    :meth:`wait`), ``server.result`` holds its :class:`SippResult`. Leaving the block waits up to ``linger``
    seconds for sipp to finish its ``calls`` on its own, then stops it (SIGUSR1, sipp's soft exit; SIGKILL a
    second later: calls in ``timewait`` do not end early).
    """

    scenario: str | os.PathLike[str] = "uas"
    port: int = 0
    calls: int | None = 1
    transport: str = "u1"
    timeout: float = 60.0
    linger: float = 10.0
    keys: Mapping[str, str] | None = None
    workdir: str | os.PathLike[str] | None = None
    extra_args: Sequence[str] = ()
    result: SippResult | None = field(default=None, init=False)
    _process: subprocess.Popen[str] | None = field(default=None, init=False, repr=False)
    _command: list[str] = field(default_factory=list, init=False, repr=False)
    _dir: Path | None = field(default=None, init=False, repr=False)

    def start(self) -> SippServer:
        binary = shutil.which("sipp")
        if binary is None:
            raise SippError("sipp is not installed (Debian package sip-tester)")
        if self._process is not None:
            raise SippError("already started")
        self.port = self.port or free_port()
        self._command = [
            binary,
            *_scenario_args(self.scenario),
            *_common_args(
                local_port=self.port,
                transport=self.transport,
                calls=self.calls,
                timeout=self.timeout,
                keys=self.keys,
                extra_args=self.extra_args,
            ),
        ]
        self._dir = _workdir(self.workdir, Path(os.fspath(self.scenario)).stem)
        self._process = subprocess.Popen(
            self._command,
            cwd=self._dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        self._await_listening()
        return self

    def _await_listening(self, deadline_s: float = 5.0) -> None:
        assert self._process is not None
        tcp = self.transport.startswith(("t", "l"))
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self.wait(0)
                raise SippError("sipp server exited at start:\n" + (self.result.describe() if self.result else ""))
            if _listening(self.port, tcp):
                return
            time.sleep(0.02)
        self.stop()
        raise SippError(f"sipp server did not bind 127.0.0.1:{self.port} within {deadline_s} s")

    def wait(self, timeout: float | None = None) -> SippResult:
        """Wait for sipp to end on its own (up to ``timeout`` s, then stop it) and return its result."""
        if self.result is not None:
            return self.result
        process = self._process
        if process is None or self._dir is None:
            raise SippError("not started")
        timed_out = False
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            process.send_signal(signal.SIGUSR1)  # soft exit: no new calls, finish the running ones
            try:
                stdout, stderr = process.communicate(timeout=1)
            except subprocess.TimeoutExpired:
                process.kill()
                stdout, stderr = process.communicate()
        self.result = _result(self._command, self._dir, process.returncode, stdout, stderr, timed_out)
        return self.result

    def stop(self) -> SippResult:
        """Stop now (soft exit, then kill) and return the result."""
        return self.wait(0)

    def __enter__(self) -> SippServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._process is not None:
            self.wait(0 if exc_type is not None else self.linger)


def check_scenario(
    scenario: str | os.PathLike[str], *, keys: Mapping[str, str] | None = None, server: bool = False
) -> str | None:
    """None if sipp loads the scenario, else sipp's complaint.

    sipp has no "parse only" mode: this runs it for one second (a client against a closed local port, or a
    server when ``server``) and checks that it got as far as its global timeout.
    """
    binary = shutil.which("sipp")
    if binary is None:
        raise SippError("sipp is not installed (Debian package sip-tester)")
    with tempfile.TemporaryDirectory(prefix="sipp-check-") as run_dir:
        command = [binary]
        if not server:
            command.append(f"{LOOPBACK}:{free_port()}")
        command += [*_scenario_args(scenario)]
        command += _common_args(local_port=free_port(), transport="u1", calls=1, timeout=1, keys=keys, extra_args=())
        completed = subprocess.run(
            command,
            cwd=run_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=1 + _GRACE,
            check=False,
        )
    if "timed out after" in completed.stderr or completed.returncode == 0:
        return None
    return _tail(completed.stderr or completed.stdout, 800) or f"sipp exited with {completed.returncode}"
