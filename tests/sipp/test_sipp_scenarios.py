"""The SIPp scenarios and the harness, against sipp itself (and against our digest + registrar for REGISTER).

Each uac_*.xml runs against a sipp server on loopback: the built-in ``uas`` where it fits (uac_basic), otherwise
a test peer of this directory (uas_*.xml): the built-in uas answers 200 at once (nothing to cancel), never sends
BYE, and does not handle re-INVITEs.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from opencomms.sip.digest import AuthError
from opencomms.sip.digest_server import DigestChallenger, HA1Table
from opencomms.sip.registrar import Registrar, RegistrarConfig
from tests.sipp import make_dtmf_pcap
from tests.sipp import sipp as harness
from tests.sipp.sipp import (
    LOOPBACK,
    SCENARIO_DIR,
    SippError,
    SippServer,
    check_scenario,
    free_port,
    run_sipp,
    sipp_available,
)

pytestmark = pytest.mark.skipif(not sipp_available(), reason="sipp not installed (Debian package sip-tester)")

SCENARIOS = sorted(path.name for path in SCENARIO_DIR.glob("*.xml"))
KEYS = {
    "uac_register.xml": {"auth_user": "alice", "auth_pass": "s3cret"},
    "uas_register.xml": {"auth_user": "alice", "auth_pass": "s3cret"},
    "uas_rtp_sink.xml": {"rtp_port": "40000"},
}


@pytest.fixture(autouse=True)
def _sipp_workdirs_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "WORKDIR_BASE", tmp_path)


def raw_sockets_allowed() -> bool:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP).close()
    except PermissionError:
        return False
    return True


def assert_server_ok(server: SippServer) -> None:
    assert server.result is not None
    assert server.result.ok, server.result.describe()


# --- the files --------------------------------------------------------------------------------------------------


def test_the_expected_scenarios_exist() -> None:
    for name in ("uac_basic", "uac_cancel", "uac_remote_bye", "uac_hold", "uac_dtmf_rtp", "uac_register"):
        assert f"{name}.xml" in SCENARIOS


@pytest.fixture(scope="module")
def scenario_checks() -> Iterator[dict[str, Future[str | None]]]:
    """`check_scenario` of every scenario, all at once: each is a sipp idling for its one-second global timeout."""
    with ThreadPoolExecutor(max_workers=len(SCENARIOS)) as pool:
        yield {
            name: pool.submit(check_scenario, name, keys=KEYS.get(name), server=name.startswith("uas_"))
            for name in SCENARIOS
        }


@pytest.mark.parametrize("name", SCENARIOS)
def test_sipp_loads_every_scenario(name: str, scenario_checks: dict[str, Future[str | None]]) -> None:
    assert scenario_checks[name].result() is None


def test_check_scenario_reports_what_is_wrong(tmp_path: Path) -> None:
    bad_keyword = tmp_path / "bad_keyword.xml"
    bad_keyword.write_text(
        '<?xml version="1.0"?><scenario name="x"><send><![CDATA[\nINVITE sip:x SIP/2.0\n[no_such_keyword]\n'
        "]]></send></scenario>\n"
    )
    bad_xml = tmp_path / "bad_xml.xml"
    bad_xml.write_text('<?xml version="1.0"?><scenario name="x"><send><![CDATA[\nINVITE sip:x SIP/2.0\n]]></sendd>')
    assert "no_such_keyword" in (check_scenario(bad_keyword) or "")
    assert "XML" in (check_scenario(bad_xml) or "")
    # a scenario needing a -key fails to load without it
    assert "rtp_port" in (check_scenario("uas_rtp_sink.xml", server=True) or "")
    with pytest.raises(SippError):
        check_scenario(tmp_path / "missing.xml")


def read_pcap(data: bytes) -> list[tuple[float, bytes]]:
    magic, _major, _minor, _zone, _sigfigs, _snaplen, linktype = struct.unpack("<IHHiIII", data[:24])
    assert (magic, linktype) == (0xA1B2C3D4, 1)
    frames, pos = [], 24
    while pos < len(data):
        seconds, micros, captured, original = struct.unpack("<IIII", data[pos : pos + 16])
        assert captured == original
        frames.append((seconds + micros / 1e6, data[pos + 16 : pos + 16 + captured]))
        pos += 16 + captured
    return frames


def ones_complement_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(int(word) for word in struct.unpack(f">{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def test_dtmf_pcap_is_what_the_generator_makes() -> None:
    committed = (SCENARIO_DIR / "dtmf_12hash.pcap").read_bytes()
    assert committed == make_dtmf_pcap.build_pcap(), "regenerate: python tests/sipp/make_dtmf_pcap.py"
    assert len(committed) < 4096


def test_dtmf_pcap_frames_are_valid_rfc4733_packets() -> None:
    frames = read_pcap((SCENARIO_DIR / "dtmf_12hash.pcap").read_bytes())
    events: list[tuple[int, bool, bool, int, int, int]] = []
    for _when, frame in frames:
        assert frame[12:14] == b"\x08\x00"  # IPv4
        ip = frame[14:34]
        assert ip[0] == 0x45 and ip[9] == 17 and ones_complement_sum(ip) == 0xFFFF
        udp = frame[34:]
        sport, dport, length, _checksum = struct.unpack(">HHHH", udp[:8])
        assert (sport, dport, length) == (6000, 6000, len(udp))
        assert ones_complement_sum(ip[12:20] + struct.pack(">BBH", 0, 17, length) + udp) == 0xFFFF
        rtp = udp[8:]
        first, second, sequence, timestamp, ssrc = struct.unpack(">BBHII", rtp[:12])
        event, flags, duration = struct.unpack(">BBH", rtp[12:16])
        assert first == 0x80 and second & 0x7F == 101 and ssrc == make_dtmf_pcap.SSRC
        events.append((event, bool(second & 0x80), bool(flags & 0x80), duration, timestamp, sequence))
    assert [e[0] for e in events] == [1] * 7 + [2] * 7 + [11] * 7
    assert [e[5] for e in events] == list(range(events[0][5], events[0][5] + 21))  # consecutive sequence
    for key in range(3):
        packets = events[key * 7 : key * 7 + 7]
        assert [p[1] for p in packets] == [True] + [False] * 6  # marker on the first packet only
        assert [p[2] for p in packets] == [False] * 4 + [True] * 3  # end bit, end packet sent three times
        assert [p[3] for p in packets] == [160, 320, 480, 640, 800, 800, 800]
        assert len({p[4] for p in packets}) == 1  # one timestamp per event
    times = [when for when, _frame in frames]
    assert times == sorted(times) and times[-1] - times[0] < 0.6


# --- harness ----------------------------------------------------------------------------------------------------


def test_uac_basic_against_the_builtin_uas() -> None:
    with SippServer("uas", calls=1) as server:
        listening = Path("/proc/net/udp").read_text()
        result = run_sipp("uac_basic.xml", LOOPBACK, server.port, calls=1, timeout=15, recv_timeout_ms=5000)
    assert result.ok, result.describe()
    # everything binds loopback only: SIP, media and sipp's control socket
    for command in (result.command, server._command):
        assert "-bind_local" in command
        for flag in ("-i", "-mi", "-ci"):
            assert command[command.index(flag) + 1] == LOOPBACK
    assert f"0100007F:{server.port:04X}" in listening  # 127.0.0.1:port
    assert f"00000000:{server.port:04X}" not in listening  # not 0.0.0.0:port
    assert (result.successful, result.failed) == (1, 0)
    assert result.stats["OutgoingCall"] == "1"
    assert len(result.response_times_ms["invite"]) == 1
    assert result.average_response_ms("invite") is not None
    assert_server_ok(server)
    assert result.workdir.is_dir() and (result.workdir / "stats.csv").exists()


def test_uac_basic_over_tcp() -> None:
    with SippServer("uas", calls=1, transport="t1") as server:
        result = run_sipp("uac_basic.xml", LOOPBACK, server.port, transport="t1", timeout=15, recv_timeout_ms=5000)
    assert result.ok, result.describe()
    # The built-in uas ends a call only after its 4 s timewait; our client closes the connection before that,
    # which sipp counts against the server as FailedTcpClosed. The call itself completed.
    assert server.result is not None and server.result.counter("IncomingCall") == 1, server.result


def test_several_calls_at_a_rate_with_a_pause() -> None:
    with SippServer("uas", calls=6) as server:
        result = run_sipp(
            "uac_basic.xml", LOOPBACK, server.port, calls=6, rate=30, call_duration_ms=50, timeout=20, service="bob"
        )
    assert result.ok, result.describe()
    assert result.successful == 6 and len(result.response_times_ms["invite"]) == 6
    assert result.counter("CurrentCall") == 0


def test_a_failing_call_is_a_result_not_an_exception() -> None:
    port = free_port()  # nothing listens there
    started = time.monotonic()
    result = run_sipp("uac_basic.xml", LOOPBACK, port, timeout=30, recv_timeout_ms=1000)
    assert not result.ok and result.returncode != 0 and result.failed == 1, result.describe()
    assert result.successful == 0
    assert time.monotonic() - started < 20
    assert "returncode=" in result.describe()


def test_global_timeout_ends_a_stuck_run() -> None:
    with SippServer("uas", calls=1, linger=0.5) as server:
        result = run_sipp("uac_basic.xml", LOOPBACK, server.port, timeout=1, call_duration_ms=5000)
    assert not result.ok and result.returncode == 255 and "timed out" in result.stderr, result.describe()


def test_arguments_are_checked() -> None:
    with pytest.raises(SippError):
        run_sipp("no_such_scenario.xml", LOOPBACK, 5060)
    with pytest.raises(SippError):
        run_sipp("uac_basic.xml", LOOPBACK, 5060, transport="x9")
    with pytest.raises(SippError):
        run_sipp("uac_basic.xml", LOOPBACK, 5060, calls=0)


# --- each scenario against a peer -------------------------------------------------------------------------------


def test_uac_cancel_against_a_ringing_peer() -> None:
    # sipp's built-in uas answers at once, so there is nothing to cancel: uas_cancel.xml rings until cancelled.
    with SippServer("uas_cancel.xml", calls=1) as server:
        result = run_sipp("uac_cancel.xml", LOOPBACK, server.port, timeout=15, recv_timeout_ms=5000)
    assert result.ok, result.describe()
    assert len(result.response_times_ms["ringing"]) == 1
    assert_server_ok(server)


def test_uac_cancel_fails_when_the_peer_answers() -> None:
    with SippServer("uas", calls=1, linger=0.5) as server:
        result = run_sipp("uac_cancel.xml", LOOPBACK, server.port, timeout=15, recv_timeout_ms=2000)
    assert not result.ok


def test_uac_remote_bye() -> None:
    with SippServer("uas_bye.xml", calls=1) as server:
        result = run_sipp("uac_remote_bye.xml", LOOPBACK, server.port, timeout=15, recv_timeout_ms=5000)
    assert result.ok, result.describe()
    assert_server_ok(server)


def test_uac_remote_bye_fails_when_nobody_hangs_up() -> None:
    with SippServer("uas", calls=1, linger=0.5) as server:  # the built-in uas waits for our BYE instead
        result = run_sipp("uac_remote_bye.xml", LOOPBACK, server.port, timeout=15, recv_timeout_ms=1000)
    assert not result.ok and result.counter("FailedTimeoutOnRecv") == 1, result.describe()


def test_uac_hold_and_resume() -> None:
    with SippServer("uas_hold.xml", calls=1) as server:
        result = run_sipp("uac_hold.xml", LOOPBACK, server.port, timeout=15, recv_timeout_ms=5000)
    assert result.ok, result.describe()
    assert_server_ok(server)


def test_uac_hold_fails_when_the_answer_is_not_recvonly(tmp_path: Path) -> None:
    peer = tmp_path / "uas_hold_wrong.xml"
    peer.write_text((SCENARIO_DIR / "uas_hold.xml").read_text().replace("a=recvonly", "a=sendrecv"))
    with SippServer(peer, calls=1, linger=3) as server:
        result = run_sipp("uac_hold.xml", LOOPBACK, server.port, timeout=15, recv_timeout_ms=3000)
    assert not result.ok and result.counter("FailedRegexpDoesntMatch") == 1, result.describe()


class RtpSink:
    """A UDP socket on loopback collecting datagrams on a thread."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.packets: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.packets.append(self.sock.recv(2048))
            except TimeoutError:
                continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.mark.skipif(not raw_sockets_allowed(), reason="play_pcap_audio needs root or CAP_NET_RAW")
def test_uac_dtmf_rtp_sends_the_telephone_events() -> None:
    sink = RtpSink()
    try:
        with SippServer("uas_rtp_sink.xml", calls=1, keys={"rtp_port": str(sink.port)}) as server:
            result = run_sipp("uac_dtmf_rtp.xml", LOOPBACK, server.port, timeout=15, recv_timeout_ms=5000)
    finally:
        sink.close()
    assert result.ok, result.describe()
    assert len(sink.packets) == 21
    events = [(packet[1] & 0x7F, packet[12], bool(packet[13] & 0x80)) for packet in sink.packets]
    assert all(pt == 101 for pt, _event, _end in events)
    assert [event for _pt, event, _end in events] == [1] * 7 + [2] * 7 + [11] * 7
    assert sum(end for _pt, _event, end in events) == 9


def test_uac_register_against_sipp_verifyauth() -> None:
    keys = {"auth_user": "alice", "auth_pass": "s3cret"}
    with SippServer("uas_register.xml", calls=1, keys=keys) as server:
        result = run_sipp("uac_register.xml", LOOPBACK, server.port, keys=keys, service="alice", timeout=15)
    assert result.ok, result.describe()
    assert len(result.response_times_ms["register"]) == 1


def test_uac_register_with_a_wrong_password_fails() -> None:
    with SippServer("uas_register.xml", calls=1, keys={"auth_user": "alice", "auth_pass": "s3cret"}) as server:
        result = run_sipp(
            "uac_register.xml",
            LOOPBACK,
            server.port,
            keys={"auth_user": "alice", "auth_pass": "wrong"},
            timeout=15,
            recv_timeout_ms=3000,
        )
    assert not result.ok and result.failed == 1, result.describe()


# --- uac_register.xml against opencomms.sip.digest_server + opencomms.sip.registrar ---------------------------------


class TinyRegistrar:
    """Just enough SIP over UDP to put DigestChallenger and Registrar in front of sipp (test only: the real
    message parser is opencomms.sip.parser)."""

    def __init__(self, challenger: DigestChallenger, registrar: Registrar) -> None:
        self.challenger = challenger
        self.registrar = registrar
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.log: list[tuple[int, str]] = []  # (status sent, reason or auth failure)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            response = self.handle(data.decode("utf-8", "replace"))
            if response is not None:
                self.sock.sendto(response.encode("utf-8"), peer)

    def handle(self, text: str) -> str | None:
        head = text.split("\r\n\r\n", 1)[0]
        start, *lines = head.split("\r\n")
        method, request_uri, _version = start.split(" ", 2)
        if method != "REGISTER":
            return None
        headers: list[tuple[str, str]] = []
        for line in lines:
            name, _colon, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))

        def all_of(name: str) -> list[str]:
            return [value for key, value in headers if key == name]

        def one(name: str) -> str:
            return all_of(name)[0]

        extra: list[tuple[str, str]] = []
        now = time.time()
        authorization = all_of("authorization")
        failure: str | None = "no credentials"
        stale = False
        if authorization:
            try:
                self.challenger.verify(authorization, method, request_uri, now)
                failure = None
            except AuthError as exc:
                failure, stale = exc.detail, exc.stale
        if failure is not None:
            self.log.append((401, failure))
            for value in self.challenger.challenge_headers(now, stale=stale):
                extra.append(("WWW-Authenticate", value))
            return self.respond(headers, 401, "Unauthorized", extra)
        aor = re.search(r"<([^>]+)>", one("to"))
        contacts: list[tuple[str, int | None, float | None]] = []
        for value in all_of("contact"):
            match = re.match(r"\s*<([^>]+)>(.*)", value)
            if match is None:
                contacts.append((value.strip(), None, None))
                continue
            params = dict(p.strip().partition("=")[::2] for p in match.group(2).split(";") if p.strip())
            expires = int(params["expires"]) if "expires" in params else None
            contacts.append((match.group(1), expires, float(params["q"]) if "q" in params else None))
        cseq = int(one("cseq").split()[0])
        expires_header = int(one("expires")) if all_of("expires") else None
        result = self.registrar.register(
            aor.group(1) if aor else one("to"), contacts, one("call-id"), cseq, expires_header, now
        )
        self.log.append((result.status, result.reason))
        extra += list(result.headers) + [("Contact", value) for value in result.contact_headers()]
        return self.respond(headers, result.status, result.reason, extra)

    @staticmethod
    def respond(headers: list[tuple[str, str]], status: int, reason: str, extra: list[tuple[str, str]]) -> str:
        names = {"via": "Via", "from": "From", "to": "To", "call-id": "Call-ID", "cseq": "CSeq"}
        lines = [f"SIP/2.0 {status} {reason}"]
        for key, value in headers:
            if key in names:
                if key == "to" and ";tag=" not in value:
                    value += ";tag=opencomms-test"
                lines.append(f"{names[key]}: {value}")
        lines += [f"{name}: {value}" for name, value in extra]
        lines.append("Content-Length: 0")
        return "\r\n".join(lines) + "\r\n\r\n"


@pytest.fixture
def tiny_registrar() -> Iterator[TinyRegistrar]:
    table = HA1Table()
    table.add("alice", "opencomms.test", "s3cret")
    # sipp 3.6 answers MD5 only and reads the first WWW-Authenticate: MD5 must come first for it (with SHA-256
    # first it gives up: "authentication must use MD5 or AKAv1-MD5")
    challenger = DigestChallenger("opencomms.test", os.urandom(32), table, algorithms=["MD5", "SHA-256"])
    server = TinyRegistrar(challenger, Registrar(RegistrarConfig(min_expires=60, max_expires=3600)))
    try:
        yield server
    finally:
        server.close()


def test_uac_register_against_our_digest_and_registrar(tiny_registrar: TinyRegistrar) -> None:
    result = run_sipp(
        "uac_register.xml",
        LOOPBACK,
        tiny_registrar.port,
        calls=3,
        rate=20,
        keys={"auth_user": "alice", "auth_pass": "s3cret"},
        service="alice",
        timeout=15,
        recv_timeout_ms=3000,
    )
    assert result.ok and result.successful == 3, result.describe() + f"\n{tiny_registrar.log}"
    assert [status for status, _ in tiny_registrar.log] == [401, 200] * 3
    (binding,) = tiny_registrar.registrar.lookup(f"sip:alice@{LOOPBACK}:{tiny_registrar.port}", time.time())
    assert binding.contact.startswith("sip:alice@127.0.0.1:") and binding.cseq == 2


def test_uac_register_with_a_wrong_password_against_our_digest(tiny_registrar: TinyRegistrar) -> None:
    result = run_sipp(
        "uac_register.xml",
        LOOPBACK,
        tiny_registrar.port,
        keys={"auth_user": "alice", "auth_pass": "nope"},
        service="alice",
        timeout=15,
        recv_timeout_ms=2000,
    )
    assert not result.ok, result.describe()
    assert tiny_registrar.log[:2] == [(401, "no credentials"), (401, "response does not match")]
