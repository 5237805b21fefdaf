"""Pure domain model: calls, participants, operations, directory entities and their state machines.

Imports nothing else of opencomms and does no I/O; time is always passed in as `now`.
"""
