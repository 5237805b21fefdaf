"""Several nodes as one platform: the Kamailio front's configuration (kamailio.py), node-to-node forwarding of
REST requests to a conversation's owner (forward.py, registry.py) and a local cluster on loopback (local.py)."""
