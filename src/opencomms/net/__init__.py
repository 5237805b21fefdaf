"""Network policy shared by everything the node connects to on a bot's say-so.

`opencomms.net.egress` holds the one outbound-address (egress) policy: which URLs and addresses the node may
connect or post to (notifications and their redirects, prompt downloads, application-hosted media WebSockets
and their redirects), checked when a URL is given and again at every connection.
"""

from __future__ import annotations

from opencomms.net.egress import EgressPolicy, EgressRefused, classify_address

__all__ = ["EgressPolicy", "EgressRefused", "classify_address"]
