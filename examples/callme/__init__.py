"""A call-me bot: calls a number, speaks a one-time code and waits for the callee to confirm it with a key."""
