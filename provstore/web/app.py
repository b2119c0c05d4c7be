"""The web application of ``provstore serve``: routes, the token check and security headers.

Starlette (a small, well-kept ASGI toolkit) serves server-rendered Jinja2 pages with
autoescaping on, so every name, path and metadata value a user recorded is shown as text.
The application only reads: every route is ``GET``, the store is opened read-only, and the
Verify button reads files on this machine without writing anything.

With a token, each request must carry ``Authorization: Bearer TOKEN`` or the session cookie
that visiting any page with ``?token=TOKEN`` sets; anything else is answered 401.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from provstore import shapes
from provstore.core.errors import (
    AmbiguousDigestError,
    ProvstoreError,
    UnknownDigestError,
    UnknownReferenceError,
    UsageError,
)
from provstore.web import pages

if TYPE_CHECKING:
    from provstore.api import Store

__all__ = ["COOKIE", "CSP", "create_app"]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
COOKIE = "provstore_session"
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Endpoint = Callable[[Request], Awaitable[Response]]

WORKERS = 4  # threads that query the store (as many as hold a read connection on a server)


def _session_value(token: str) -> str:
    """What the cookie holds: derived from the token, so the token itself is never echoed."""
    return hmac.new(token.encode(), b"provstore-serve-session", hashlib.sha256).hexdigest()


class Guard:
    """Security headers on every answer; with a token, 401 for requests that lack it."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token
        self.session = None if token is None else _session_value(token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_HEADERS]
            await send(message)

        response = self._check(Request(scope))
        if response is not None:
            await response(scope, receive, send_with_headers)
        else:
            await self.app(scope, receive, send_with_headers)

    def _check(self, request: Request) -> Response | None:
        if self.token is None or self.session is None:
            return None
        given = request.headers.get("authorization", "")
        if given.startswith("Bearer ") and hmac.compare_digest(given[7:], self.token):
            return None
        if hmac.compare_digest(request.cookies.get(COOKIE, ""), self.session):
            return None
        query = request.query_params.get("token")
        if query is not None and hmac.compare_digest(query, self.token):
            rest = [(k, v) for k, v in parse_qsl(request.url.query) if k != "token"]
            # one leading slash: "//host/..." would send the browser to another site
            target = "/" + request.url.path.lstrip("/") + (f"?{urlencode(rest)}" if rest else "")
            answer = RedirectResponse(target, status_code=303)
            answer.set_cookie(COOKIE, self.session, httponly=True, samesite="strict")
            return answer
        return Response(
            "401: this server needs its token (Authorization: Bearer TOKEN, or visit ?token=)\n",
            status_code=401,
            media_type="text/plain",
            headers={"www-authenticate": "Bearer"},
        )


def _status_of(exc: ProvstoreError) -> int:
    if isinstance(exc, (UnknownDigestError, UnknownReferenceError)):
        return 404
    if isinstance(exc, (AmbiguousDigestError, UsageError)):
        return 400
    return 500


def create_app(store: Store, *, token: str | None = None) -> ASGIApp:
    """The ASGI application over ``store`` (which the caller opened and closes)."""
    templates = Environment(
        loader=PackageLoader("provstore.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    templates.filters["when"] = shapes.format_ns
    templates.filters["took"] = shapes.duration
    templates.filters["short"] = lambda d: (d.hex() if isinstance(d, bytes) else str(d))[:12]
    templates.filters["hex"] = lambda d: d.hex() if isinstance(d, bytes) else str(d)

    def render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = templates.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status)

    # The store's calls block; they run on a few long-lived threads, so each keeps the read
    # connection it holds on a server (a fresh thread per request would pay a pool checkout).
    workers = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="provstore-web")

    def page(build: Callable[[Request], Response]) -> Endpoint:
        def answer(request: Request) -> Response:
            try:
                return build(request)
            except ProvstoreError as exc:
                return render("error.html", _status_of(exc), message=str(exc))

        async def endpoint(request: Request) -> Response:
            return await asyncio.get_running_loop().run_in_executor(workers, answer, request)

        return endpoint

    def api(build: Callable[[Request], Any]) -> Endpoint:
        def answer(request: Request) -> Response:
            try:
                data = build(request)
            except ProvstoreError as exc:
                return JSONResponse({"error": str(exc)}, status_code=_status_of(exc))
            return Response(shapes.to_json_text(data), media_type="application/json")

        async def endpoint(request: Request) -> Response:
            return await asyncio.get_running_loop().run_in_executor(workers, answer, request)

        return endpoint

    def q(request: Request) -> dict[str, str]:
        return dict(request.query_params)

    def ref(request: Request) -> str:
        return str(request.path_params["ref"])

    def search(request: Request) -> Response:
        text = (request.query_params.get("q") or "").strip()
        if not text:
            return render("search.html", q=text, found=[])
        found = pages.search(store, text)
        if len(found) == 1:
            return RedirectResponse(_url_of(found[0].kind, found[0].hex), status_code=303)
        return render("search.html", q=text, found=found)

    def show_object(request: Request) -> Response:
        item = store.get(store.resolve(ref(request)))
        if item.kind in ("run", "product", "environment"):
            return RedirectResponse(_url_of(item.kind, item.hex), status_code=303)
        body = shapes.to_json_text(shapes.to_json(item))
        return render("object.html", kind=item.kind, digest=item.hex, body=body)

    def verify(request: Request) -> Any:
        return store.verify(ref(request)).to_json()

    routes = [
        Route("/", lambda r: RedirectResponse("/runs", status_code=303)),
        Route("/runs", page(lambda r: render("runs.html", **pages.runs_page(store, q(r))))),
        Route(
            "/runs/{ref}",
            page(lambda r: render("run.html", **pages.run_page(store, ref(r), q(r)))),
        ),
        Route(
            "/products",
            page(lambda r: render("products.html", **pages.products_page(store, q(r)))),
        ),
        Route(
            "/products/{ref}",
            page(lambda r: render("product.html", **pages.product_page(store, ref(r)))),
        ),
        Route(
            "/products/{ref}/verify",
            page(lambda r: render("verify.html", ref=ref(r), report=verify(r))),
        ),
        Route(
            "/lineage/{ref}",
            page(lambda r: render("lineage.html", **pages.lineage_page(store, ref(r), q(r)))),
        ),
        Route(
            "/environments/{ref}",
            page(
                lambda r: render("environment.html", **pages.environment_page(store, ref(r), q(r)))
            ),
        ),
        Route(
            "/compare", page(lambda r: render("compare.html", **pages.compare_page(store, q(r))))
        ),
        Route("/search", page(search)),
        Route("/objects/{ref}", page(show_object)),
        # The JSON API: what `provstore COMMAND --json` prints for the same question.
        Route("/api/log", api(lambda r: [shapes.run_summary_json(x) for x in _log(store, q(r))])),
        Route("/api/products", api(lambda r: pages.products_page(store, q(r))["page"])),
        Route("/api/show/{ref}", api(lambda r: _show(store, ref(r), q(r)))),
        Route("/api/lineage/{ref}", api(lambda r: pages.lineage_data(store, ref(r), q(r)))),
        Route(
            "/api/graph/{ref}",
            api(lambda r: pages.lineage_page(store, ref(r), q(r))["graph"].to_json()),
        ),
        Route("/api/diff", api(lambda r: pages.compare_page(store, q(r))["diff"])),
        Route("/api/verify/{ref}", api(verify)),
        Route("/api/stats", api(lambda r: store.stats())),
        Mount("/static", StaticFiles(packages=[("provstore.web", "static")]), name="static"),
    ]

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        workers.shutdown(wait=False)

    return Guard(Starlette(routes=routes, lifespan=lifespan), token)


def _url_of(kind: str, digest: str) -> str:
    return {
        "run": f"/runs/{digest}",
        "product": f"/products/{digest}",
        "environment": f"/environments/{digest}",
    }.get(kind, f"/objects/{digest}")


def _log(store: Store, params: dict[str, str]) -> list[Any]:
    limit = pages.limit_of(params, 20)
    return store.runs(
        limit, where=pages.run_filter(params), after=shapes.parse_cursor(params.get("after"))
    )


def _show(store: Store, ref: str, params: dict[str, str]) -> Any:
    limit = pages.limit_of(params, 20)
    return shapes.shown(store, store.get(store.resolve(ref)), limit)[0]
