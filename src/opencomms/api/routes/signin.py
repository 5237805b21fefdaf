"""Delegated sign-in routes in Microsoft identity platform shape: /authorize (a small sign-in form, PKCE S256),
/devicecode and the /devicelogin page, and the token endpoint's authorization_code, refresh_token and
device_code grants (called from identity.token).

Forms are CSRF-safe (a per-page value in a hidden field and a SameSite=Strict cookie, both required) and failed
sign-ins are rate-limited per user name and per client address. Pages carry no scripts and deny framing.
"""

from __future__ import annotations

import asyncio
import base64
import html
import json
import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode

from opencomms.api.app import ApiContext
from opencomms.api.connections import source_key
from opencomms.api.errors import OAuthError
from opencomms.api.http import Request, Response
from opencomms.api.routes.meetings import page
from opencomms.api.routing import Kind, Route
from opencomms.auth.secrets import hash_secret, verify_secret
from opencomms.auth.signin import AuthRequest, DeviceFlow, Grant, GrantError, SignIn, parse_scopes, redirect_allowed
from opencomms.domain.directory import Application, Tenant, User
from opencomms.domain.errors import NotFound, ServiceUnavailable

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DELEGATED_GRANTS = ("authorization_code", "refresh_token", DEVICE_GRANT)
_COOKIE = "opencomms_csrf"
_DUMMY_HASH = hash_secret(secrets.token_urlsafe(16))


def _signin(ctx: ApiContext) -> SignIn:
    if ctx.signin is None:
        raise ServiceUnavailable("Sign-in is not enabled on this node.", retry_after=60)
    return ctx.signin


def _tenant(ctx: ApiContext, name: str) -> Tenant:
    tenant = ctx.directory.find_tenant(name) if len(name) <= 256 else None
    if tenant is None:
        raise NotFound("Unknown tenant.")
    return tenant


def _form(req: Request) -> dict[str, str]:
    try:
        return {k: v[0] for k, v in parse_qs(req.body.decode("utf-8")).items()}
    except UnicodeDecodeError:
        return {}


def _cookie(req: Request) -> str:
    for part in req.headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == _COOKIE:
            return value
    return ""


def _set_cookie(ctx: ApiContext, csrf: str) -> tuple[bytes, bytes]:
    secure = "; Secure" if ctx.public_url.startswith("https:") else ""
    return b"set-cookie", f"{_COOKIE}={csrf}; Path=/; HttpOnly; SameSite=Strict{secure}".encode()


def _fields(**hidden: str) -> str:
    return "".join(f"<input type='hidden' name='{k}' value='{html.escape(v, quote=True)}'>" for k, v in hidden.items())


_CREDENTIALS = (
    "<p><label>User name<br><input name='username' autocomplete='username' value='{user}'></label></p>"
    "<p><label>Password<br><input name='password' type='password' autocomplete='current-password'></label></p>"
)


def _sign_in_page(action: str, hidden: str, message: str, app: str, user: str = "", code: bool = False) -> str:
    note = f"<p role='alert'><b>{html.escape(message)}</b></p>" if message else ""
    code_field = "<p><label>Code<br><input name='user_code' autocomplete='off'></label></p>" if code else ""
    return (
        f"<p>Sign in to continue to <b>{html.escape(app)}</b>.</p>{note}<form method='post' action='{action}'>"
        f"{hidden}{code_field}{_CREDENTIALS.format(user=html.escape(user, quote=True))}"
        "<p><button type='submit'>Sign in</button></p></form>"
    )


# -- /authorize ----------------------------------------------------------------------------------------------
def _too_many(ctx: ApiContext, signin: SignIn, req: Request) -> int | None:
    """Seconds this client address must wait before opening another sign-in page or device code."""
    wait = signin.starts.take(source_key(req.source), ctx.clock())
    return None if wait is None else max(1, int(wait + 0.999))


def _busy_page(wait: int) -> Response:
    return page(
        429,
        "Too many sign-ins",
        "<p>Too many sign-in pages from this address: wait and try again.</p>",
        [(b"retry-after", str(wait).encode())],
    )


def authorize(ctx: ApiContext, req: Request) -> Response:
    signin = _signin(ctx)
    tenant = _tenant(ctx, req.params["tenant"])
    if (wait := _too_many(ctx, signin, req)) is not None:
        return _busy_page(wait)
    q = {k: v[0] for k, v in parse_qs(req.query).items()}
    app = ctx.directory.get_app(q.get("client_id", "")[:64]) if q.get("client_id") else None
    if app is None or app.tenant_id != tenant.id:
        return page(400, "Sign-in error", "<p>The application is not registered in this tenant (AADSTS700016).</p>")
    redirect_uri = q.get("redirect_uri", "")
    if not redirect_uri or not redirect_allowed(redirect_uri, app.redirect_uris):
        text = "<p>The redirect URI is not registered for this application (AADSTS50011).</p>"
        return page(400, "Sign-in error", text)
    state = q.get("state")
    try:
        if q.get("response_type") != "code":
            raise GrantError("unsupported_response_type", "Only response_type=code is supported.", 700054)
        if q.get("response_mode", "query") != "query":
            raise GrantError("invalid_request", "Only response_mode=query is supported.", 900144)
        if not q.get("code_challenge") or q.get("code_challenge_method") != "S256":
            raise GrantError("invalid_request", "PKCE is required: send code_challenge with method S256.", 9002325)
        audience, scopes, requested, oidc = parse_scopes(q.get("scope", ""), ctx.tokens.audiences)
    except GrantError as exc:
        return _back(redirect_uri, {"error": exc.error, "error_description": exc.description, "state": state})
    now = ctx.clock()
    request = AuthRequest(
        tenant.id,
        app.id,
        redirect_uri,
        audience,
        scopes,
        requested,
        oidc,
        state,
        q.get("nonce"),
        q["code_challenge"],
        secrets.token_urlsafe(24),
        now + signin.config.form_lifetime,
    )
    txn = signin.open_form(request)
    body = _sign_in_page("", _fields(txn=txn, csrf=request.csrf), "", app.display_name, q.get("login_hint", ""))
    return page(200, "Sign in", body, [_set_cookie(ctx, request.csrf)])


def _back(redirect_uri: str, params: dict[str, str | None]) -> Response:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    sep = "&" if "?" in redirect_uri else "?"
    return Response(302, headers=[(b"location", f"{redirect_uri}{sep}{query}".encode())])


async def _check_user(ctx: ApiContext, req: Request, tenant_id: str, form: dict[str, str]) -> User | str:
    """The signed-in user, or the message to show: wrong name or password, or too many failures."""
    signin = _signin(ctx)
    name = form.get("username", "").strip()[:256]
    keys = (f"user:{name.lower()}", f"source:{source_key(req.source)}")
    now = ctx.clock()
    if signin.wait(keys, now) is not None:
        return "Too many failed sign-ins: wait a while and try again."
    user = ctx.directory.find_user(name, tenant_id) if name else None
    password = form.get("password", "")
    if user is None or user.password_hash is None:  # as slow as a real check: no user enumeration by timing
        await asyncio.to_thread(verify_secret, password[:256], _DUMMY_HASH)
        ok = False
    else:
        ok = await asyncio.to_thread(ctx.directory.check_password, user, password)
    if not ok or user is None:
        signin.failed(keys, now)
        return "The user name or password is incorrect."
    return user


async def authorize_post(ctx: ApiContext, req: Request) -> Response:
    signin = _signin(ctx)
    tenant = _tenant(ctx, req.params["tenant"])
    form = _form(req)
    try:
        request = signin.form(form.get("txn", ""), form.get("csrf", ""), _cookie(req), ctx.clock())
    except GrantError as exc:
        return page(400, "Sign-in error", f"<p>{html.escape(exc.description)}</p>")
    if request.tenant_id != tenant.id:
        return page(400, "Sign-in error", "<p>This sign-in page belongs to another tenant.</p>")
    checked = await _check_user(ctx, req, tenant.id, form)
    if isinstance(checked, str):
        app = ctx.directory.get_app(request.app_id)
        hidden = _fields(txn=form.get("txn", ""), csrf=request.csrf)
        body = _sign_in_page("", hidden, checked, app.display_name if app else "", form.get("username", "")[:256])
        return page(400, "Sign in", body)
    code = signin.finish_form(form["txn"], request, checked.id, ctx.clock())
    return _back(request.redirect_uri, {"code": code, "state": request.state})


# -- device code -----------------------------------------------------------------------------------------------
def devicecode(ctx: ApiContext, req: Request) -> Response:
    signin = _signin(ctx)
    tenant = ctx.directory.find_tenant(req.params["tenant"]) if len(req.params["tenant"]) <= 256 else None
    if tenant is None:
        raise OAuthError(400, "invalid_request", f"Tenant '{req.params['tenant'][:64]}' not found.", 90002)
    form = _form(req)
    app = _client(ctx, tenant, form.get("client_id", ""))
    if (wait := _too_many(ctx, signin, req)) is not None:
        raise OAuthError(429, "temporarily_unavailable", "Too many device codes from this address.", 50196, wait)
    if not app.public_client:
        raise OAuthError(
            400,
            "invalid_client",
            "The application is not a public client (opencomms app update --public-client).",
            7000218,
        )
    try:
        audience, scopes, requested, oidc = parse_scopes(form.get("scope", ""), ctx.tokens.audiences)
    except GrantError as exc:
        raise OAuthError(400, exc.error, exc.description, exc.code) from None
    now = ctx.clock()
    lifetime = int(signin.config.device_code_lifetime)
    flow = DeviceFlow(tenant.id, app.id, audience, scopes, requested, oidc, signin.user_code(), now + lifetime)
    device_code = signin.start_device(flow)
    uri = f"{ctx.public_url}/devicelogin"
    return Response(
        200,
        {
            "user_code": flow.user_code,
            "device_code": device_code,
            "verification_uri": uri,
            "expires_in": lifetime,
            "interval": signin.config.device_poll_interval,
            "message": f"To sign in, use a web browser to open the page {uri} and enter the code {flow.user_code} "
            "to authenticate.",
        },
    )


def devicelogin(ctx: ApiContext, req: Request) -> Response:
    signin = _signin(ctx)
    if (wait := _too_many(ctx, signin, req)) is not None:
        return _busy_page(wait)
    csrf = signin.new_csrf(ctx.clock())
    body = _sign_in_page("", _fields(csrf=csrf), "", "a device", code=True)
    return page(200, "Enter code", body, [_set_cookie(ctx, csrf)])


async def devicelogin_post(ctx: ApiContext, req: Request) -> Response:
    signin = _signin(ctx)
    form = _form(req)
    now = ctx.clock()
    if not signin.check_csrf(form.get("csrf", ""), _cookie(req), now):
        return page(400, "Sign-in error", "<p>The form did not come from this page; open it again.</p>")
    source = (f"source:{source_key(req.source)}",)
    flow = None if signin.wait(source, now) is not None else signin.device_by_user_code(form.get("user_code", ""), now)
    message = ""
    if flow is None:
        signin.failed(source, now)
        message = "That code is wrong or has expired (or too many attempts: wait a while)."
    else:
        checked = await _check_user(ctx, req, flow.tenant_id, form)
        if not isinstance(checked, str):
            flow.user_id = checked.id
            return page(200, "Signed in", "<p>You are signed in. Return to your device; you can close this page.</p>")
        message = checked
    body = _sign_in_page(
        "", _fields(csrf=form.get("csrf", "")), message, "a device", form.get("username", "")[:256], code=True
    )
    return page(400, "Enter code", body)


# -- the token endpoint's delegated grants --------------------------------------------------------------------
def _client(ctx: ApiContext, tenant: Tenant, client_id: str) -> Application:
    app = ctx.directory.get_app(client_id) if client_id and len(client_id) <= 64 else None
    if app is None or app.tenant_id != tenant.id:
        raise OAuthError(
            400, "unauthorized_client", f"Application '{client_id[:64]}' was not found in the tenant.", 700016
        )
    return app


async def delegated_token(
    ctx: ApiContext, req: Request, tenant: Tenant, form: dict[str, str], client_id: str | None, secret: str | None
) -> Response:
    signin = _signin(ctx)
    wait = ctx.throttle.check(f"token:{(client_id or '')[:64]}", ctx.clock())
    if wait is not None:
        raise OAuthError(429, "temporarily_unavailable", "Too many token requests; retry later.", 50196, wait)
    app = _client(ctx, tenant, client_id or "")
    if secret:
        check = lambda s: ctx.directory.check_secret(app, s)  # noqa: E731
        source = source_key(req.source)
        verdict = await ctx.secrets.verify(app.id, source, app.secret_hashes, secret, ctx.clock(), check)
        if verdict.outcome != "ok":
            raise OAuthError(401, "invalid_client", "Invalid client secret provided.", 7000215)
    elif not app.public_client:
        raise OAuthError(
            401, "invalid_client", "The request body must contain client_secret (a confidential client).", 7000218
        )
    now = ctx.clock()
    grant_type = form["grant_type"]
    try:
        if grant_type == "authorization_code":
            grant = signin.redeem_code(
                form.get("code", ""), app.id, form.get("redirect_uri", ""), form.get("code_verifier", ""), now
            )
        elif grant_type == DEVICE_GRANT:
            grant = signin.poll_device(form.get("device_code", ""), app.id, now)
        else:
            grant = signin.redeem_refresh(form.get("refresh_token", ""), app.id, now)
            if form.get("scope"):
                audience, scopes, requested, _ = parse_scopes(form["scope"], ctx.tokens.audiences)
                if audience != grant.audience or not set(scopes) <= set(grant.scopes):
                    raise GrantError("invalid_grant", "The scopes exceed those the user granted.", 65001)
                grant = Grant(grant.tenant_id, grant.app_id, grant.user_id, audience, scopes, requested, grant.oidc)
    except GrantError as exc:
        raise OAuthError(exc.status, exc.error, exc.description, exc.code) from None
    user = ctx.directory.get_user(grant.user_id)
    if user is None or user.tenant_id != tenant.id or grant.tenant_id != tenant.id:
        raise OAuthError(400, "invalid_grant", "The user no longer exists in this tenant.", 50034)
    return Response(200, _tokens(ctx, signin, grant, user, now))


def _tokens(ctx: ApiContext, signin: SignIn, grant: Grant, user: User, now: float) -> dict[str, Any]:
    access, expires_in = ctx.tokens.issue_delegated_token(
        tenant_id=grant.tenant_id,
        app_id=grant.app_id,
        user_id=user.id,
        scopes=grant.scopes,
        audience=grant.audience,
        now=now,
    )
    body: dict[str, Any] = {
        "token_type": "Bearer",
        "scope": " ".join((*grant.requested, *grant.oidc)),
        "expires_in": expires_in,
        "ext_expires_in": expires_in,
        "access_token": access,
    }
    if "offline_access" in grant.oidc:
        body["refresh_token"] = signin.issue_refresh(grant, now)
    if "openid" in grant.oidc:
        body["id_token"] = ctx.tokens.issue_id_token(
            tenant_id=grant.tenant_id,
            client_id=grant.app_id,
            user_id=user.id,
            name=user.display_name,
            username=user.upn or user.id,
            nonce=grant.nonce,
            now=now,
        )
        info = json.dumps({"uid": user.id, "utid": user.tenant_id}).encode()
        body["client_info"] = base64.urlsafe_b64encode(info).decode().rstrip("=")
    return body


_FORM = "application/x-www-form-urlencoded"
_PAGE_ERRORS = ((400, "badRequestPage"),)
_OPEN_ERRORS = ((400, "badRequestPage"), (429, "tooManyPages"))
ROUTES = [
    Route(
        "GET",
        "{tenant}/oauth2/v2.0/authorize",
        authorize,
        Kind.PUBLIC,
        "Sign a user in (authorization code with PKCE S256): the sign-in page",
        response_media="text/html",
        errors=(400, 404, 429),
        error_responses=_OPEN_ERRORS,
        query=(
            ("client_id", "The application"),
            ("redirect_uri", "A registered redirect URI"),
            ("response_type", "code"),
            ("scope", "e.g. https://graph.microsoft.com/OnlineMeetings.ReadWrite openid offline_access"),
            ("state", "Echoed back"),
            ("nonce", "Put in the ID token"),
            ("code_challenge", "PKCE"),
            ("code_challenge_method", "S256"),
            ("login_hint", "User name"),
        ),
    ),
    Route(
        "POST",
        "{tenant}/oauth2/v2.0/authorize",
        authorize_post,
        Kind.PUBLIC,
        "Sign-in form post: redirects to the app with code and state",
        request_schema="signInForm",
        request_media=_FORM,
        response_status=302,
        errors=(400, 404),
        error_responses=_PAGE_ERRORS,
    ),
    Route(
        "POST",
        "{tenant}/oauth2/v2.0/devicecode",
        devicecode,
        Kind.PUBLIC,
        "Start a device-code sign-in",
        request_schema="deviceCodeRequest",
        request_media=_FORM,
        response_schema="deviceCodeResponse",
        errors=(400, 429),
        oauth_errors=True,
    ),
    Route(
        "GET",
        "devicelogin",
        devicelogin,
        Kind.PUBLIC,
        "Device login page (enter the code and sign in)",
        response_media="text/html",
        errors=(429,),
        error_responses=_OPEN_ERRORS,
    ),
    Route(
        "POST",
        "devicelogin",
        devicelogin_post,
        Kind.PUBLIC,
        "Device login form post",
        request_schema="signInForm",
        request_media=_FORM,
        response_media="text/html",
        errors=(400,),
        error_responses=_PAGE_ERRORS,
    ),
]
