"""baresip (Debian) driven headless from tests: a real softphone on loopback."""
