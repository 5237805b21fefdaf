"""attach_webrtc: the WebRTC edge (gateway/webrtc.py) joined to the node's SIP gateway, readiness and /web pages.

Called once by the composition root when `[webrtc] enabled` and the SIP gateway runs; the node starts and closes
the returned edge with its SIP gateway. A node whose store is Redis keeps its web join tickets there (any node of
the cluster redeems them).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from opencomms.config import WebRtcConfig
from opencomms.gateway.webjoin_redis import RedisWebJoinTickets
from opencomms.gateway.webrtc import WebRtcEdge
from opencomms.rtp.opus import OpusSettings
from opencomms.rtp.opus import available as opus_available
from opencomms.store.redis_common import redis_target
from opencomms.web.app import PREFIX, WebApp, WebContext
from opencomms.web.feed import FEED_PATH, MeetingFeed
from opencomms.web.meeting import JOIN_PREFIX, MeetingPages

__all__ = ["attach_webrtc", "effective_webrtc"]

log = logging.getLogger("opencomms.webrtc")


def effective_webrtc(rtc: WebRtcConfig, libopus: bool) -> WebRtcConfig:
    """The [webrtc] settings the edge runs: `opus_in_node` only with `opus` and the system libopus (without it,
    said once in the log, rtpengine transcodes)."""
    if not rtc.opus_in_node or (rtc.opus and libopus):
        return rtc
    if rtc.opus:
        log.warning("webrtc.opus_in_node: the system libopus (libopus0) is missing; rtpengine transcodes Opus")
    return dataclasses.replace(rtc, opus_in_node=False)


def attach_webrtc(node: Any) -> WebRtcEdge:
    config = node.config
    gateway = node.sip
    tls = (config.tls_cert, config.tls_key) if config.tls else None
    target = redis_target(config.store_url, config.cluster)
    tickets = RedisWebJoinTickets(target, config.webrtc.ticket_ttl) if target is not None else None
    rtc = effective_webrtc(config.webrtc, opus_available())
    edge = WebRtcEdge(
        rtc,
        gateway.endpoint,
        node.tokens,
        node.directory,
        public_url=node.public_url,
        tls=tls,
        clock=node.clock,
        tickets=tickets,
    )
    gateway.webrtc = edge
    if rtc.opus_in_node:  # the bank encodes the browsers' Opus itself
        opus = OpusSettings(complexity=rtc.node_opus_complexity, bitrate=rtc.node_opus_bitrate)
        gateway.rtp_config = dataclasses.replace(gateway.rtp_config, opus=opus)
    edge.on_closed = gateway.browser_gone
    node.readiness.extra["rtpengine"] = edge.check
    sip_host = config.sip.public_host or config.sip.host
    lookup = node.live_meetings.lookup
    rtc = config.webrtc
    secret = Path(rtc.turn_secret_file).read_bytes().strip() if rtc.turn_secret_file else None
    context = WebContext(
        node.tokens,
        node.directory,
        edge.tickets,
        lambda: edge.ws_url,
        node.clock,
        lookup,
        sip_host,
        ice_urls=rtc.ice_servers,
        turn_secret=secret or None,
        turn_ttl=rtc.turn_ttl,
    )
    context.pages = MeetingPages(
        context,
        node.public_url,
        config.meetings.dial_in_number,
        guests=rtc.web_guests,
        guest_rate=rtc.guest_join_rate,
        guest_burst=rtc.guest_join_burst,
    )
    app = WebApp(context)
    node.app.mounts[PREFIX] = app
    node.app.mounts[JOIN_PREFIX] = app  # the joinWebUrl opens the web client's join page
    feed = MeetingFeed(node.calls, gateway, edge)
    node.calls.subscribe(feed)
    node.media.observers.append(feed)
    edge.routes.append((FEED_PATH, feed.handler))
    if node.transcription is not None:  # live captions on the meeting page
        node.transcription.heard.append(feed.caption)
    return edge
