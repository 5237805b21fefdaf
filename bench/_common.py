"""What the meeting benches share (conference_sip, conference_load, webrtc_legs, meeting_join): a node child process
started and stopped, its ready file, meetings anyone joins, and a process's CPU seconds; and what every
`results_section` does: run a bench script in a fresh process and read its last (JSON) line; and the Asterisk
anchor's RTP timing analysis (tools/rtp_gaps.py), which the benches apply to the node's packets too.

Imported as `_common` (bench scripts run by path, so bench/ is first on sys.path)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ANCHOR = Path(
    os.environ.get("ASTERISK_ANCHOR")
    or os.environ.get("ANCHOR_DIR")
    or Path(__file__).resolve().parent.parent.parent / "shared" / "anchors" / "asterisk"
)
"""The Asterisk anchor's directory (its scripts and tools): $ASTERISK_ANCHOR (or $ANCHOR_DIR), else
`../shared/anchors/asterisk/` beside the checkout, else the workspace's (a clone elsewhere: /tmp, a worktree)."""
if not ANCHOR.is_dir() and not (os.environ.get("ASTERISK_ANCHOR") or os.environ.get("ANCHOR_DIR")):
    ANCHOR = Path("/work/shared/anchors/asterisk")


def rtp_gaps() -> ModuleType:
    """The anchor's tools/rtp_gaps.py as a module: `analyse(pcap)` gives the % of each stream's RTP packets within
    5 ms of its 20 ms schedule, as the anchor measures Asterisk."""
    path = ANCHOR / "tools" / "rtp_gaps.py"
    spec = importlib.util.spec_from_file_location("anchor_rtp_gaps", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise SystemExit(f"{path}: the anchor's RTP analysis is missing")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wait_ready_file(node: subprocess.Popen[Any], ready: Path, seconds: float = 60.0) -> None:
    """Wait until the node child writes `ready`; SystemExit if it dies or takes longer than `seconds`."""
    for _ in range(int(seconds / 0.05)):
        if ready.exists() or node.poll() is not None:
            break
        time.sleep(0.05)
    if not ready.exists():
        raise SystemExit("the node did not start")


def stop_node(node: subprocess.Popen[Any], timeout: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds."""
    node.send_signal(signal.SIGTERM)
    try:
        node.wait(timeout)
    except subprocess.TimeoutExpired:
        node.kill()
        node.wait()


def open_meeting(platform: Any, room: int) -> None:
    """Meeting `room` (join id str(room)) on a TestPlatform: no passcode, no lobby, dial-in straight in."""
    from opencomms.domain.meetings import LobbyScope

    platform.add_meeting(
        join_meeting_id=str(room),
        subject=f"bench room {room}",
        passcode=None,
        passcode_required=False,
        lobby_scope=LobbyScope.EVERYONE,
        dial_in_bypass=True,
    )


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (Linux /proc), 0 when unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_json(script: str, *args: str, timeout: float) -> dict[str, Any]:
    """`python bench/SCRIPT ARGS...` from the checkout's root; its last stdout line as JSON (a failed run: exit with
    its command and the end of its stderr). The full stdout is under "_stdout"."""
    cmd = [sys.executable, f"bench/{script}", *args]
    print("$", " ".join(cmd), flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=Path(__file__).parent.parent)
    if out.returncode != 0:
        raise SystemExit(f"benchmark failed: {' '.join(cmd)}\n{out.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["_stdout"] = out.stdout
    return result
