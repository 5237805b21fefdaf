"""The SIP gateway: connects phones, softphones and trunks to bots through the calling service and the media
engine. `mapping.py` is pure (SIP <-> Graph vocabulary); the gateway itself wires the SIP stack, RTP sessions
and external call legs together.
"""
