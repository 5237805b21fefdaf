"""Example bots built on the opencomms SDK: an IVR (stateful and stateless), a call-me bot and an echo bot.

Each is started with one command from the repository root; see examples/README.md.
"""
