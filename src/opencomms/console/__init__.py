"""The operators' web console served by the node at `/console` (server-rendered HTML, a little vanilla JavaScript
polling JSON under `/console/api/`; no build step, nothing fetched from elsewhere)."""
