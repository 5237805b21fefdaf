"""The browser side of the node: the /web pages (app.py), their JS client (client/, bundled by `make web` into
static/), and `attach_webrtc` (wiring.py) that puts the WebRTC edge, the SIP gateway and the pages together."""
