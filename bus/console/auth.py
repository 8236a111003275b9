"""The console's lock: one token, from ``$BUS_CONSOLE_TOKEN``, unlocks everything but the
login itself. The browser gets a session cookie derived from the token (HttpOnly,
SameSite=Strict, so another site cannot make it act); a script sends the token itself as
``Authorization: Bearer TOKEN``."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

from starlette.requests import Request
from starlette.responses import Response

from bus.errors import ConfigError

TOKEN_ENV = "BUS_CONSOLE_TOKEN"
COOKIE = "bus_console"
MIN_LENGTH = 8


def token_from_env(generate: bool = False) -> tuple[str, bool]:
    """The token, and whether it was made up now because ``$BUS_CONSOLE_TOKEN`` is unset."""
    token = os.environ.get(TOKEN_ENV, "")
    if token:
        return token, False
    if not generate:
        raise ConfigError(f"set {TOKEN_ENV} to the token that unlocks the console")
    return secrets.token_urlsafe(16), True


class Auth:
    def __init__(self, token: str) -> None:
        if len(token) < MIN_LENGTH:
            raise ConfigError(
                f"{TOKEN_ENV} is too short: use at least {MIN_LENGTH} characters, e.g. "
                "`python -c 'import secrets; print(secrets.token_urlsafe(16))'`"
            )
        self._token = token.encode()
        # The cookie holds a value derived from the token, never the token itself.
        self._session = hmac.new(self._token, b"bus console session", hashlib.sha256).hexdigest()

    def matches(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self._token)

    def allows(self, request: Request) -> bool:
        cookie = request.cookies.get(COOKIE)
        if cookie is not None and hmac.compare_digest(cookie.encode(), self._session.encode()):
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.matches(given.strip())

    def open_session(self, response: Response) -> None:
        response.set_cookie(COOKIE, self._session, httponly=True, samesite="strict", path="/")

    def close_session(self, response: Response) -> None:
        response.delete_cookie(COOKIE, path="/")
