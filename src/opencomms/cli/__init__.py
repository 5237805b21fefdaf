"""The `opencomms` command line: serve a node, manage the directory, make development certificates."""
