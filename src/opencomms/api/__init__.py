"""The node's HTTP surface as one pure ASGI app: Graph call control, the token service, health and OpenAPI.

Handlers are thin: they parse with `wire`, call services, and leave error mapping to `errors`.
"""

from opencomms.api.app import ApiContext, build_app

__all__ = ["ApiContext", "build_app"]
