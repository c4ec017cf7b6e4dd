"""The access token of a web app served beyond this machine (``adaptlab ui --host 0.0.0.0``).

With ``UISettings.token`` set, every request must carry it, one of three ways:

* ``Authorization: Bearer TOKEN`` (scripts, ``curl``);
* the cookie a browser got from opening any page once with ``?token=TOKEN``: the answer is a redirect to
  the same page without the token in its address, setting an HttpOnly, SameSite=Lax cookie (so page
  scripts cannot read it and other sites' forms do not send it);
* ``?token=TOKEN`` on the request itself (a POST from a script that cannot set headers).

Anything else gets 401 with a page or JSON that says how to get in. Tokens are compared in constant time.
On loopback without a token nothing is asked, as before.
"""
from __future__ import annotations

import hmac
import html
import json
from http.cookies import CookieError, SimpleCookie
from typing import Any, Optional
from urllib.parse import parse_qsl, quote, urlencode

COOKIE = "adaptlab_token"


def cookie_name(port: int) -> str:
    """The cookie's name: per port, as browsers share cookies between the ports of one host.

    Example:
        >>> cookie_name(8765)
        'adaptlab_token_8765'
    """
    return f"{COOKIE}_{int(port)}"


def same_token(given: Optional[str], token: str) -> bool:
    """``given == token`` in constant time (a timing side channel must not reveal the token).

    Example:
        >>> same_token("abc", "abc"), same_token("abd", "abc"), same_token(None, "abc")
        (True, False, False)
    """
    return given is not None and hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))


def _bearer(headers: dict[str, str]) -> Optional[str]:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def _cookie(headers: dict[str, str], name: str) -> Optional[str]:
    try:
        jar = SimpleCookie(headers.get("cookie", ""))
    except CookieError:
        return None
    return jar[name].value if name in jar else None


def _message(as_html: bool) -> bytes:
    text = ("this adaptlab server asks for its access token. Open the address printed when it started (it ends "
            "in ?token=...; your browser then keeps the token in a cookie), or ask whoever started it. Scripts "
            "send the header 'Authorization: Bearer TOKEN'.")
    if not as_html:
        return json.dumps({"detail": text}).encode("utf-8")
    # A form too, for whoever was told the token: it opens this page with ?token=, which sets the cookie.
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>adaptlab: access token needed"
            f"</title></head><body><h1>Access token needed</h1><p id='error-message'>{html.escape(text)}</p>"
            "<form method='get' id='token-form'><label>Access token <input type='password' name='token' "
            "autocomplete='off' required></label> <button type='submit'>Open</button></form></body></html>"
            ).encode("utf-8")


class TokenMiddleware:
    """Refuses (401) every request without ``settings.token``; turns ``?token=`` on a page into a cookie.

    Example:
        >>> from adaptlab.ui import UISettings, create_app
        >>> app = create_app(UISettings(host="0.0.0.0", token="a-long-random-token-0123"))  # doctest: +SKIP
    """

    def __init__(self, app: Any, settings: Any) -> None:
        self.app = app
        self.token: str = settings.token
        self.cookie = cookie_name(settings.port)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)  # lifespan
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = next((v for k, v in reversed(query) if k == "token"), None)
        if given is not None and scope["type"] == "http" and scope["method"] in ("GET", "HEAD") \
                and same_token(given, self.token):
            await self._to_cookie(scope, send, [(k, v) for k, v in query if k != "token"])
            return
        if same_token(_bearer(headers), self.token) or same_token(_cookie(headers, self.cookie), self.token) \
                or same_token(given, self.token):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = _message("text/html" in headers.get("accept", ""))
        ctype = b"text/html; charset=utf-8" if body.startswith(b"<") else b"application/json"
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", b'Bearer realm="adaptlab"'), (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": body})

    async def _to_cookie(self, scope: dict, send: Any, rest: list[tuple[str, str]]) -> None:
        """303 to the same page without the token in its address, with the token in an HttpOnly cookie."""
        # One leading slash: "//host" would send the browser to another site.
        location = "/" + quote((scope.get("path") or "/").lstrip("/")) + (f"?{urlencode(rest)}" if rest else "")
        cookie = f"{self.cookie}={self.token}; Path=/; HttpOnly; SameSite=Lax"
        await send({"type": "http.response.start", "status": 303,
                    "headers": [(b"location", location.encode("latin-1")), (b"set-cookie", cookie.encode("latin-1")),
                                (b"content-length", b"0"), (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": b""})


__all__ = ["COOKIE", "TokenMiddleware", "cookie_name", "same_token"]
