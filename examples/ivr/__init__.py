"""An IVR auto-attendant driven by a YAML menu (see examples/README.md for how to run it)."""
