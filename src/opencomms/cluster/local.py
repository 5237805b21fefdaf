"""A local cluster on loopback: redis-server, Kamailio with a generated configuration, and N `opencomms serve`
nodes, started in that order and stopped in the reverse one (`opencomms cluster up`, tests, bench/cluster_calls.py).

Each node gets its own node id (`node1`…), HTTP port, SIP port and RTP port range, and advertises its own SIP and
RTP address, so a call's media stays on the node that owns it. Everything listens on the plan's host (loopback by
default) and lives in a private run directory (mode 0700): the generated kamailio.cfg, the dispatcher list, the
Redis data (append-only, so apps and keys survive a restart) and one log file per process. Every child dies with
this process (PR_SET_PDEATHSIG), even if it is killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from opencomms.cluster.kamailio import MODULE_DIRS, KamailioPlan, dispatcher_list, kamailio_cfg

__all__ = ["ClusterError", "ClusterPlan", "LocalCluster", "NodeProcess", "free_port"]


class ClusterError(RuntimeError):
    """A part of the local cluster could not start (the message names it and the tail of its log)."""


@dataclass(frozen=True, slots=True)
class ClusterPlan:
    """What `opencomms cluster up` starts. A port of 0 picks a free one."""

    nodes: int = 3
    host: str = "127.0.0.1"
    sip_port: int = 5060
    """Kamailio's SIP port (UDP and TCP): where phones and trunks point."""
    http_port: int = 8080
    """The first node's HTTP port; node i listens on http_port + i - 1 (0: free ports)."""
    node_sip_port: int = 5071
    """The first node's SIP port; node i uses node_sip_port + i - 1 (0: free ports)."""
    rtp_port_min: int = 20000
    rtp_ports_per_node: int = 2000
    """Each node's RTP range: [rtp_port_min + (i-1)*this, + this)."""
    redis_url: str = ""
    """An existing Redis to use; empty: start redis-server in the run directory."""
    redis_port: int = 0
    run_dir: str = "var/cluster"
    config_file: str = ""
    """A TOML file every node loads (its [cluster] node_id and the ports are set per node over it)."""
    key_prefix: str = "opencomms:"
    env: tuple[tuple[str, str], ...] = ()
    """Extra environment for every node (OPENCOMMS_… knobs)."""
    kamailio: str = "kamailio"
    """The kamailio executable."""
    startup_timeout: float = 30.0

    def __post_init__(self) -> None:
        if not 1 <= self.nodes <= 64:
            raise ValueError("nodes: expected 1 to 64")


@dataclass(slots=True)
class NodeProcess:
    """One node of the local cluster."""

    node_id: str
    url: str
    sip_port: int
    http_port: int
    process: subprocess.Popen[bytes]
    log: Path


@dataclass(slots=True)
class LocalCluster:
    """Start with `start()` (or `with LocalCluster(plan) as cluster:`); `stop()` ends every process."""

    plan: ClusterPlan
    run_dir: Path = field(init=False)
    redis_url: str = ""
    sip_port: int = 0
    nodes: list[NodeProcess] = field(default_factory=list)
    redis: subprocess.Popen[bytes] | None = None
    kamailio: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.run_dir = Path(self.plan.run_dir).resolve()

    @property
    def sip_address(self) -> str:
        return f"{self.plan.host}:{self.sip_port}"

    def __enter__(self) -> LocalCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LocalCluster:
        p = self.plan
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.run_dir.chmod(0o700)
        except OSError as exc:
            raise ClusterError(f"run directory {self.run_dir}: {exc.strerror or exc}") from exc
        self.redis_url = p.redis_url or self._start_redis()
        ports = [
            (
                p.http_port + i if p.http_port else free_port(p.host),
                p.node_sip_port + i if p.node_sip_port else free_port(p.host),
            )
            for i in range(p.nodes)
        ]
        # node 1 first: on a fresh Redis it makes the cluster's signing keys, which the others then load
        self.nodes.append(self._start_node(1, *ports[0]))
        self._await_node(self.nodes[0])
        for i, (http, sip) in enumerate(ports[1:], 2):
            self.nodes.append(self._start_node(i, http, sip))
        for node in self.nodes[1:]:
            self._await_node(node)
        self.sip_port = p.sip_port or free_port(p.host)
        self._start_kamailio()
        return self

    # -- redis -----------------------------------------------------------------------------------------------
    def _start_redis(self) -> str:
        exe = shutil.which("redis-server")
        if exe is None:
            raise ClusterError("redis-server not found (Debian: apt-get install redis-server)")
        port = self.plan.redis_port or free_port(self.plan.host)
        data = self.run_dir / "redis"
        data.mkdir(exist_ok=True)
        argv = [exe, "--bind", self.plan.host, "--port", str(port), "--dir", str(data), "--appendonly", "yes"]
        argv += ["--save", "", "--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning"]
        log = self.run_dir / "redis.log"
        self.redis = _spawn(argv, log)
        deadline = time.monotonic() + self.plan.startup_timeout
        while not _redis_ping(self.plan.host, port):
            if self.redis.poll() is not None or time.monotonic() > deadline:
                raise ClusterError(f"redis-server did not start: {_tail(log)}")
            time.sleep(0.05)
        return f"redis://{self.plan.host}:{port}/0"

    # -- nodes -----------------------------------------------------------------------------------------------
    def _start_node(self, i: int, http: int, sip: int) -> NodeProcess:
        p = self.plan
        node_id = f"node{i}"
        rtp_min = p.rtp_port_min + (i - 1) * p.rtp_ports_per_node
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH", ""), *sys.path])),
            "OPENCOMMS_CLUSTER__NODE_ID": node_id,
            "OPENCOMMS_CLUSTER__KEY_PREFIX": p.key_prefix,
            "OPENCOMMS_SIP__HOST": p.host,
            "OPENCOMMS_SIP__PORT": str(sip),
            "OPENCOMMS_SIP__PUBLIC_HOST": p.host,
            "OPENCOMMS_SIP__RTP_PORT_MIN": str(rtp_min),
            "OPENCOMMS_SIP__RTP_PORT_MAX": str(rtp_min + p.rtp_ports_per_node - 1),
            "OPENCOMMS_MEDIA__RECORDINGS_DIR": str(self.run_dir / "recordings"),
            **dict(p.env),
        }
        ready = self.run_dir / f"{node_id}.ready"
        ready.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "opencomms.cli.main", "serve", "--store", self.redis_url]
        argv += ["--host", p.host, "--port", str(http), "--ready-file", str(ready)]
        if p.config_file:
            argv += ["--config", p.config_file]
        log = self.run_dir / f"{node_id}.log"
        proc = _spawn(argv, log, env)
        return NodeProcess(node_id, f"http://{p.host}:{http}", sip, http, proc, log)

    def _await_node(self, node: NodeProcess) -> None:
        ready = self.run_dir / f"{node.node_id}.ready"
        deadline = time.monotonic() + self.plan.startup_timeout
        while not ready.exists() or not ready.read_text():
            if node.process.poll() is not None or time.monotonic() > deadline:
                raise ClusterError(f"{node.node_id} did not start: {_tail(node.log)}")
            time.sleep(0.05)
        node.url = ready.read_text().strip()

    # -- kamailio --------------------------------------------------------------------------------------------
    def _start_kamailio(self) -> None:
        p = self.plan
        exe = shutil.which(p.kamailio)
        if exe is None:
            raise ClusterError("kamailio not found (Debian: apt-get install kamailio)")
        modules = next((d for d in MODULE_DIRS if Path(d, "dispatcher.so").exists()), MODULE_DIRS[0])
        ds = self.run_dir / "dispatcher.list"
        addrs = tuple((p.host, n.sip_port) for n in self.nodes)
        ds.write_text(dispatcher_list(addrs))
        cfg = self.run_dir / "kamailio.cfg"
        cfg.write_text(kamailio_cfg(KamailioPlan(p.host, self.sip_port, addrs, str(ds), module_dir=modules)))
        log = self.run_dir / "kamailio.log"
        argv = [exe, "-f", str(cfg), "-DD", "-E", "-m", "64", "-M", "8", "-Y", str(self.run_dir)]
        argv += ["-P", str(self.run_dir / "kamailio.pid")]
        self.kamailio = _spawn(argv, log)
        deadline = time.monotonic() + p.startup_timeout
        while not _sip_answers(p.host, self.sip_port):
            if self.kamailio.poll() is not None or time.monotonic() > deadline:
                raise ClusterError(f"kamailio did not start: {_tail(log)}")
            time.sleep(0.1)

    def restart_kamailio(self) -> None:
        """Stop Kamailio and start it again on the same port (calls in progress carry on: in-dialog requests
        follow their Record-Route, which needs no state)."""
        if self.kamailio is not None:
            _signal(self.kamailio, signal.SIGTERM)
            _reap(self.kamailio, 5)
        self._start_kamailio()

    # -- running ---------------------------------------------------------------------------------------------
    def kill_node(self, index: int) -> None:
        """`kill -9` node `index` (0-based) and reap it: a node dying without handing anything back."""
        proc = self.nodes[index].process
        _signal(proc, signal.SIGKILL)
        proc.wait()

    def restart_node(self, index: int) -> NodeProcess:
        """Start node `index` (0-based) again after it ended, with its node id and ports (it rejoins the cluster and
        the dispatcher set; its pending notifications, if any are left, are its own again)."""
        old = self.nodes[index]
        if old.process.poll() is None:
            raise ClusterError(f"{old.node_id} is still running")
        node = self._start_node(index + 1, old.http_port, old.sip_port)
        self.nodes[index] = node
        self._await_node(node)
        return node

    def dead(self) -> list[str]:
        """The parts that exited by themselves (their names)."""
        parts = [("redis-server", self.redis), ("kamailio", self.kamailio)]
        parts += [(n.node_id, n.process) for n in self.nodes]
        return [name for name, proc in parts if proc is not None and proc.poll() is not None]

    def stop(self) -> None:
        """Nodes first (they hand their leases back), then Kamailio, then Redis. Idempotent."""
        for node in self.nodes:
            _signal(node.process, signal.SIGTERM)
        for node in self.nodes:
            _reap(node.process, 10)
        for proc in (self.kamailio, self.redis):
            if proc is not None:
                _signal(proc, signal.SIGTERM)
                _reap(proc, 5)


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on `host` for both UDP and TCP."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = int(udp.getsockname()[1])
            with socket.socket() as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
                return port
    raise ClusterError(f"no free port on {host}")


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    os.setpgrp()  # Ctrl-C reaches this process only: it stops the children in order


def _spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent
        )


def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)


def _reap(proc: subprocess.Popen[bytes], timeout: float) -> None:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _tail(log: Path, limit: int = 1200) -> str:
    try:
        return log.read_text(errors="replace")[-limit:]
    except OSError:
        return "(no log)"


def _redis_ping(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _sip_answers(host: str, port: int) -> bool:
    """Kamailio answers an OPTIONS with Max-Forwards 0 itself (483): it is up."""
    msg = (
        f"OPTIONS sip:{host}:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {host}:9;branch=z9hG4bK-probe{time.monotonic_ns()}\r\n"
        f"Max-Forwards: 0\r\nFrom: <sip:probe@{host}>;tag=p\r\nTo: <sip:{host}>\r\n"
        f"Call-ID: probe-{time.monotonic_ns()}\r\n"
        "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.3)
        try:
            sock.bind((host, 0))
            sock.sendto(msg.replace(f"{host}:9", f"{host}:{sock.getsockname()[1]}").encode(), (host, port))
            return sock.recv(2048).startswith(b"SIP/2.0 ")
        except OSError:
            return False
