"""`make bench`: run every benchmark and rewrite bench/RESULTS.md with the figures, commands, date and machine.

Each benchmark is a standalone script; run one alone with the command shown in RESULTS.md.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def run(cmd: list[str]) -> str:
    print("$", " ".join(cmd), flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=HERE.parent)
    if out.returncode != 0:
        raise SystemExit(f"benchmark failed: {' '.join(cmd)}\n{out.stderr[-4000:]}")
    print(out.stdout[-2000:], flush=True)
    return out.stdout


def bot_to_bot(date: str, where: str) -> list[str]:
    cmd = [PY, "bench/bot_to_bot.py", "--rate", "100", "--seconds", "10", "--workers", "48"]
    result = json.loads(run(cmd).strip().splitlines()[-1])
    paced, top = result["paced"], result["max"]
    shown = "python bench/bot_to_bot.py --rate 100 --seconds 10 --workers 48"
    lost = paced["expected_notifications"] - paced["notifications"]
    rows = [
        ("max bot-to-bot cycles/s (48 concurrent)", f"{top['cycles_per_s']}", ">= 100", f"{top['failed']} failed"),
        ("REST p50 / p99 at 100 cycles/s", f"{paced['rest_p50_ms']} / {paced['rest_p99_ms']} ms", "p99 < 10 ms", ""),
        (
            "notification delivery p50 / p99 at 100 cycles/s",
            f"{paced['delivery_p50_ms']} / {paced['delivery_p99_ms']} ms",
            "p99 < 20 ms",
            "from the REST request that caused it to the bot's receipt",
        ),
        (
            "notifications lost / duplicated at 100 cycles/s",
            f"{lost} / {paced['duplicates']}",
            "0 / 0",
            f"{paced['notifications']} of {paced['expected_notifications']} delivered; {paced['failed']} cycles failed",
        ),
        (
            "REST p99 / delivery p99 at max rate",
            f"{top['rest_p99_ms']} / {top['delivery_p99_ms']} ms",
            "-",
            "saturated node: queueing shows here",
        ),
    ]
    lines = [
        "## Platform foundation: bot-to-bot call cycles against one node",
        "",
        "A cycle: create -> incoming notification -> answer -> established to both -> DELETE -> terminated to both.",
        "The node is `opencomms serve` on its embedded SQLite store (one process); both bots are real aiohttp",
        "webhook servers validating every callback JWT, in a second process. Both share the same 2 cores.",
        "",
        "| figure | value | target | notes | command | date | machine |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {f} | {v} | {t} | {n} | `{shown}` | {date} | {where} |" for f, v, t, n in rows]
    return lines


def notify_dispatch(date: str, where: str) -> list[str]:
    cmd = [PY, "bench/notify_dispatch.py", "--rate", "1000", "--seconds", "5", "--calls", "200"]
    out = run(cmd)
    return [
        "## Notification dispatcher alone (component figure)",
        "",
        f"`python bench/notify_dispatch.py --rate 1000 --seconds 5 --calls 200` — {date} — {where}",
        "",
        "```",
        out.strip(),
        "```",
    ]


SECURITY_BENCHES: list[list[str]] = [
    ["bench/hostile_call.py"],
    ["bench/sip_flood.py"],
    ["bench/sip_flood.py", "--target", "silent"],
    ["bench/app_flood.py"],
    ["bench/store_faults.py"],
    ["bench/http_limits.py", "--seconds", "5"],
    ["bench/egress_probe.py"],
    ["bench/fuzz_sip.py", "--sip", "1000000", "--sdp", "100000", "--seed", "14"],
]
"""Issue 14's figures: each script prints its result in its last lines (bench/RESULTS.md, section "Hardening")."""

SECURITY_TITLE = "## Hardening: hostile peers, floods and faults"


def security(date: str, where: str) -> list[str]:
    lines = [
        SECURITY_TITLE,
        "",
        "Each script runs a real node (and real peers: SIPp, HTTP servers) on loopback and prints what it counted.",
        "Targets (issue 14): during a 1,000 INVITE/s flood from one address >= 99 % of 2 calls/s from another succeed;",
        "with one hostile call up the other calls' RTP is 100 % delivered; 1 M fuzzed SIP messages and 100 k SDP",
        "bodies give 0 unhandled exceptions; 0 callback, redirect or WebSocket destinations reached (egress policy);",
        "one app at full speed stays bounded at its quota; disk full and a held write lock give 0 process exits.",
    ]
    for args in SECURITY_BENCHES:
        out = run([PY, *args]).strip().splitlines()
        lines += ["", f"`python {' '.join(args)}` — {date} — {where}", "", "```", *out[-6:], "```"]
    return lines


def script_section(title: str, intro: str, args: list[str], date: str, where: str, out: str | None = None) -> list[str]:
    """A section holding one script's last lines, with its command, date and machine (runs it unless given `out`)."""
    lines = (out if out is not None else run([PY, *args])).strip().splitlines()
    return [title, "", intro, "", f"`python {' '.join(args)}` — {date} — {where}", "", "```", *lines[-6:], "```"]


LEDGER = (
    "## Conversation ledger: commits per second (issue 10)",
    "One conversation of two legs per unit with one notification; 64 concurrent units; async memory and SQLite "
    "ledger (writer thread, group commits) against the node's synchronous SQLite unit of work.",
    ["bench/ledger.py"],
)
METRICS_COST = (
    "## Metrics on the hot path (issue 13, target < 3 %)",
    "Bot-to-bot cycles and SIP calls with `[metrics] enabled` off and on in one run (off-on-on-off after a warm-up); "
    "observers_us_per_b2b_cycle times the hooks of one cycle directly.",
    ["bench/metrics_cost.py", "--rounds", "1"],
)

RTP_TIMING = (
    "## RTP timing without privileges: engine thread vs media process (issue 16)",
    "N long G.711 calls (RTP both ways, a prompt looping) while SIPp places short calls into an IVR bot; no "
    "SCHED_FIFO, no pinning; each mode in a fresh node, rounds interleaved. Target >= 99.9 % within 5 ms at 500.",
    ["bench/rtp_timing.py", "--calls", "200", "--rate", "50", "--seconds", "15", "--rounds", "2"],
)
REDIS_STORE = (
    "## The node on Redis vs SQLite (issue 11)",
    "The same bot-to-bot load on a node with store_url=redis:// (a real redis-server) and on SQLite, "
    "rounds alternating.",
    ["bench/redis_store.py"],
)
CLUSTER = (
    "## Several nodes: Kamailio and Redis (issue 11)",
    "(a) SIP calls with the example IVR bot through Kamailio to 1, 2, 3 nodes vs one SQLite node, every node as busy "
    "as the SQLite one (node CPU per call net of idle, medians of alternating rounds, Kamailio and Redis apart; target "
    "overhead < 15 %); (b) failover: kill -9 of a node with calls up, "
    "time until every affected bot is told (target p99 < 5 s) and notifications lost over 10 cycles (target 0); "
    "(c) bot-to-bot cycles/s through two nodes vs one.",
    [
        ["bench/cluster_calls.py", "--rate", "15", "--seconds", "10", "--per-node", "--rounds", "3", "--bot", "ivr"],
        ["bench/cluster_failover.py", "--cycles", "10", "--calls", "4"],
        ["bench/cluster_bot_to_bot.py", "--rounds", "2"],
    ],
)
SPEECH = (
    "## Speech (issue 15)",
    "(a) concurrent talkers per core with captions within 1.5 s (p95) and (b) WER of the live pipeline at 16 kHz and "
    "through G.711 (flite and festival voices the prompts do not use; targets 6 % / 8 %); (c) piper render time "
    "per second of audio, uncached and cached.",
)

BROWSERS = (
    "## Browsers over WebRTC (issue 12)",
    "Browser legs per core: simulated browsers (a second rtpengine doing ICE and DTLS-SRTP, Opus coded once as Chrome "
    "codes it) through the real SIP-over-WebSocket edge into meetings of 10, node + its rtpengine on one core with "
    "the node's defaults (the node codes Opus, rtpengine relays at SCHED_FIFO), aiortc in the same run; target >= 200 "
    "legs per core at >= 99.9 % within 5 ms. Then rtpengine transcoding (webrtc.opus_in_node = false), click-to-audio "
    "join time in headless Chromium (target p99 < 1 s), and the node's codec cost per leg, G.722 vs PCMU.",
    [
        ["bench/webrtc_legs.py", "--sizes", "100,200,250,300"],
        ["bench/webrtc_legs.py", "--rtpengine-transcodes", "--sizes", "50,100", "--aiortc", "0"],
        ["bench/webrtc_join.py"],
        ["bench/codec_legs.py"],
    ],
)

MEETING_BENCHES = (
    (["bench/conference_tick.py"], "(b) one meeting of 1000 with 4 talkers: engine tick p99, target < 10 ms"),
    (["bench/conference_legs.py"], "(a) rooms of 10, 3 talking, RTP both ways via the bank (no SIP): legs per core"),
    (
        ["bench/conference_sip.py", "30", "10", "--hold", "30", "--capture", "15", "--sweep", "300,500,600"],
        "(a) the Asterisk anchor's bench_conference.sh against the node (meetings by SIP address) and ConfBridge, "
        "then legs per core with bench/conference_load.py (one-process SIP+RTP generator, kernel receive times)",
    ),
    (["bench/roster_cost.py"], "(c) CPU and roster bytes per join at 10, 100, 1000 (delta), target 1000th < 2x 10th"),
    (["bench/meeting_join.py"], "(d) bot join to established at 20 joins/s, p99 target < 50 ms"),
)


def meetings(date: str, where: str) -> list[str]:
    """The online-meeting figures of issue 17, one script each."""
    lines = ["## Online meetings (issue 17)", "", "Conference media, rosters and joins; each line from its command."]
    for args, what in MEETING_BENCHES:
        out = run([PY, *args]).strip().splitlines()
        lines += ["", f"{what}: `python {' '.join(args)}` — {date} — {where}", "", "```", *out[-4:], "```"]
    return lines


def scripts_section(title: str, intro: str, scripts: list[list[str]], date: str, where: str) -> list[str]:
    """A section of several scripts: each one's command, date, machine and last lines."""
    lines = [title, "", intro]
    for args in scripts:
        out = run([PY, *args]).strip().splitlines()
        lines += ["", f"`python {' '.join(args)}` — {date} — {where}", "", "```", *out[-3:], "```"]
    return lines


def speech(date: str, where: str) -> list[str]:
    """The speech figures of issue 15, one script each."""
    scripts = [["bench/transcription.py"], ["bench/piper_render.py", "--prompts", "8"]]
    return scripts_section(*SPEECH, scripts, date, where)


def browsers(date: str, where: str) -> list[str]:
    """The browser figures of issue 12, one script each."""
    return scripts_section(*BROWSERS, date, where)


def splice(section: list[str]) -> None:
    """Replace one section of RESULTS.md (by its title line), keeping the others."""
    path = HERE / "RESULTS.md"
    old = path.read_text().splitlines() if path.exists() else []
    title = section[0]
    if title in old:
        start = old.index(title)
        end = next((i for i in range(start + 1, len(old)) if old[i].startswith("## ")), len(old))
        new = [*old[:start], *section, "", *old[end:]]
    else:
        new = [*old, "", *section, ""] if old and old[-1] else [*old, *section, ""]
    path.write_text("\n".join(new).rstrip("\n") + "\n")


def main() -> None:
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    where = machine()
    if sys.argv[1:] == ["--only", "security"]:
        splice(security(date, where))
        print("wrote the hardening section of bench/RESULTS.md")
        return
    only = {
        "ratio": lambda: __import__("asterisk_ratio").results_section(date, where),
        "ivr": lambda: __import__("asterisk_ivr").results_section(date, where),
        "rtp-timing": lambda: script_section(*RTP_TIMING, date, where),
        "redis": lambda: script_section(*REDIS_STORE, date, where),
        "cluster": lambda: scripts_section(*CLUSTER, date, where),
        "speech": lambda: speech(date, where),
        "browsers": lambda: browsers(date, where),
    }
    if len(sys.argv) == 3 and sys.argv[1] == "--only" and sys.argv[2] in only:
        splice(only[sys.argv[2]]())
        print(f"wrote the {sys.argv[2]} section of bench/RESULTS.md")
        return
    if sys.argv[1:] == ["--only", "meetings"]:
        splice(meetings(date, where))
        print("wrote the online meetings section of bench/RESULTS.md")
        return
    sections = [bot_to_bot(date, where), notify_dispatch(date, where)]
    extra = HERE / "dsp_micro.py"
    if extra.exists():
        out = run([PY, "bench/dsp_micro.py"])
        sections.append(
            [
                "## Media DSP micro-benchmark (groundwork for the media engine)",
                "",
                f"`python bench/dsp_micro.py` — {date} — {where}",
                "",
                "```",
                out.strip(),
                "```",
            ]
        )
    sections.append(__import__("media_engine").results_section(date, where))  # bench/media_engine.py
    sections.append(__import__("rtp_sessions").results_section(date, where))  # bench/rtp_sessions.py
    sections.append(__import__("sip_calls").results_section(date, where))  # bench/sip_calls.py
    sections.append(__import__("apphosted_latency").results_section(date, where))  # bench/apphosted_latency.py
    sections.append(script_section(*LEDGER, date, where))
    sections.append(script_section(*METRICS_COST, date, where))
    sections.append(meetings(date, where))
    sections.append(__import__("asterisk_ratio").results_section(date, where))  # bench/asterisk_ratio.py
    sections.append(__import__("asterisk_ivr").results_section(date, where))  # bench/asterisk_ivr.py
    sections.append(script_section(*RTP_TIMING, date, where))
    sections.append(script_section(*REDIS_STORE, date, where))
    sections.append(scripts_section(*CLUSTER, date, where))
    sections.append(speech(date, where))
    sections.append(browsers(date, where))
    sections.append(security(date, where))
    text = [
        "# Benchmark results",
        "",
        "Written by `make bench` (bench/run.py). Every figure comes from the command",
        "next to it; the machine is shared and noisy, so compare figures from the same run.",
        "",
    ]
    for section in sections:
        text += [*section, ""]
    (HERE / "RESULTS.md").write_text("\n".join(text))
    print("wrote bench/RESULTS.md")


if __name__ == "__main__":
    main()
