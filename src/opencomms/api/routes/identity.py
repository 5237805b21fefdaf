"""Token service routes in Microsoft identity platform shape: token endpoint, OpenID metadata, JWKS.

`/{tenant}` accepts a tenant id or domain, as login.microsoftonline.com does; errors use OAuth's format.
"""

from __future__ import annotations

import base64
import functools
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from opencomms.api.app import ApiContext
from opencomms.api.connections import source_key
from opencomms.api.errors import OAuthError
from opencomms.api.http import Request, Response
from opencomms.api.routes.signin import DELEGATED_GRANTS, delegated_token
from opencomms.api.routing import Kind, Route
from opencomms.auth.permissions import DelegatedScope
from opencomms.domain.errors import NotFound


def _tenant(ctx: ApiContext, name: str) -> Any:
    tenant = ctx.directory.find_tenant(name)
    if tenant is None:
        raise OAuthError(400, "invalid_request", f"Tenant '{name[:64]}' not found.", 90002)
    return tenant


def _resource(scope: str, audiences: list[str]) -> str | None:
    for item in scope.split():
        if not item.endswith("/.default"):
            continue
        resource = item[: -len("/.default")]
        for aud in audiences:
            if resource.rstrip("/").lower() == aud.rstrip("/").lower():
                return aud
    return None


async def token(ctx: ApiContext, req: Request) -> Response:
    tenant = _tenant(ctx, req.params["tenant"])
    ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise OAuthError(400, "invalid_request", "The request body must be application/x-www-form-urlencoded.", 900144)
    try:
        form = {k: v[0] for k, v in parse_qs(req.body.decode("utf-8"), strict_parsing=False).items()}
    except UnicodeDecodeError:
        raise OAuthError(400, "invalid_request", "The request body is not valid form data.", 900144) from None
    client_id, secret = form.get("client_id"), form.get("client_secret")
    basic = req.headers.get("authorization", "")
    if basic.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(basic[6:]).decode("utf-8")
            client_id, _, secret = (unquote(p) for p in decoded.partition(":"))
        except (ValueError, UnicodeDecodeError):
            raise OAuthError(401, "invalid_client", "Malformed Basic authorization header.", 7000215) from None
    if form.get("grant_type") in DELEGATED_GRANTS and ctx.signin is not None:
        return await delegated_token(ctx, req, tenant, form, client_id, secret)
    if form.get("grant_type") != "client_credentials":
        raise OAuthError(
            400,
            "unsupported_grant_type",
            "Supported grants: client_credentials, authorization_code, refresh_token, "
            "urn:ietf:params:oauth:grant-type:device_code.",
            70003,
        )
    if not client_id or not secret:
        raise OAuthError(400, "invalid_request", "client_id and client_secret are required.", 900144)
    audiences = list(ctx.tokens.audiences)
    resource = _resource(form.get("scope", ""), audiences)
    if resource is None:
        accepted = " or ".join(f"{a}/.default" for a in audiences)
        raise OAuthError(400, "invalid_scope", f"The scope must be {accepted}.", 70011)
    wait = ctx.throttle.check(f"token:{client_id[:64]}", ctx.clock())
    if wait is not None:
        raise OAuthError(429, "temporarily_unavailable", "Too many token requests; retry later.", 50196, wait)
    app = ctx.directory.get_app(client_id) if len(client_id) <= 64 else None
    if app is None or app.tenant_id != tenant.id:
        raise OAuthError(
            400, "unauthorized_client", f"Application '{client_id[:64]}' was not found in the tenant.", 700016
        )
    source = source_key(req.source)
    check = functools.partial(ctx.directory.check_secret, app)
    verdict = await ctx.secrets.verify(app.id, source, app.secret_hashes, secret, ctx.clock(), check)
    if verdict.outcome == "throttled":
        raise OAuthError(
            429,
            "temporarily_unavailable",
            "Too many failed sign-in attempts for this application or from this address; retry later.",
            50053,
            verdict.retry_after,
        )
    if verdict.outcome != "ok":
        raise OAuthError(401, "invalid_client", "Invalid client secret provided.", 7000215)
    access_token, expires_in = ctx.tokens.issue_access_token(
        tenant_id=tenant.id, app_id=app.id, roles=app.permissions, audience=resource, now=ctx.clock()
    )
    return Response(
        200,
        {
            "token_type": "Bearer",
            "expires_in": expires_in,
            "ext_expires_in": expires_in,
            "access_token": access_token,
        },
    )


def openid_configuration(ctx: ApiContext, req: Request) -> Response:
    tenant = _tenant(ctx, req.params["tenant"])
    base = f"{ctx.public_url}/{tenant.id}"
    host = urlsplit(ctx.public_url).netloc
    return Response(
        200,
        {
            "issuer": ctx.tokens.issuer_for(tenant.id),
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic", "none"],
            "grant_types_supported": [
                "client_credentials",
                "authorization_code",
                "refresh_token",
                "urn:ietf:params:oauth:grant-type:device_code",
            ],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": [
                "openid",
                "profile",
                "offline_access",
                *(f"{a}/.default" for a in ctx.tokens.audiences),
                *(s.value for s in DelegatedScope),
            ],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "claims_supported": [
                "aud",
                "iss",
                "iat",
                "nbf",
                "exp",
                "tid",
                "appid",
                "azp",
                "roles",
                "scp",
                "sub",
                "oid",
                "name",
                "preferred_username",
                "nonce",
            ],
            "tenant_region_scope": None,
            "cloud_instance_name": host,
            "cloud_graph_host_name": host,
            "msgraph_host": host,
        },
    )


def jwks(ctx: ApiContext, req: Request) -> Response:
    name = req.params.get("tenant", "common")
    if name.lower() not in ("common", "organizations") and ctx.directory.find_tenant(name) is None:
        raise NotFound("Unknown tenant.")
    return Response(200, ctx.tokens.jwks(ctx.clock()), [(b"cache-control", b"public, max-age=300")])


def callback_openid_configuration(ctx: ApiContext, req: Request) -> Response:
    """Metadata bots use to validate our callback tokens (Microsoft's lives at api.aps.skype.com)."""
    return Response(
        200,
        {
            "issuer": ctx.tokens.callback_issuer,
            "jwks_uri": f"{ctx.public_url}/common/discovery/v2.0/keys",
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        },
    )


ROUTES = [
    Route(
        "POST",
        "{tenant}/oauth2/v2.0/token",
        token,
        Kind.PUBLIC,
        "Get an access token (client credentials, authorization code, refresh token, device code)",
        request_schema="tokenRequest",
        request_media="application/x-www-form-urlencoded",
        response_schema="tokenResponse",
        errors=(400, 401, 429),
        oauth_errors=True,
    ),
    Route(
        "GET",
        "{tenant}/v2.0/.well-known/openid-configuration",
        openid_configuration,
        Kind.PUBLIC,
        "OpenID Connect metadata of a tenant",
        errors=(400,),
        oauth_errors=True,
    ),
    Route("GET", "{tenant}/discovery/v2.0/keys", jwks, Kind.PUBLIC, "Signing keys (JWKS)", errors=(404,)),
    Route(
        "GET",
        "v1/.well-known/OpenIdConfiguration",
        callback_openid_configuration,
        Kind.PUBLIC,
        "Metadata for validating callback (notification) tokens",
    ),
]
