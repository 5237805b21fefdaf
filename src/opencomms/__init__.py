"""opencomms: a self-hosted cloud communications platform for calling and meeting bots.

The REST API and callbacks follow Microsoft Graph v1.0 (cloud communications); see docs/architecture.md.
Importing the package has no side effect (the server's packages pin BLAS threads: see `opencomms.blas`), so that
the SDK (`opencomms.sdk`) leaves a bot's environment alone.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
