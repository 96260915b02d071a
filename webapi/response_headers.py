"""Headers that tell caches what an answer depends on and how long it may be kept.

- `Vary: Origin` on every answer of the CORS-covered paths while `CORS_ORIGINS` is set: the
  `Access-Control-Allow-*` headers depend on the request's `Origin`, so a cache must not hand
  one origin's answer to another (flask-cors adds it only when several origins are allowed).
- `/public/*` successful GETs: `Cache-Control: public, max-age=30` — discovery is the same for
  everyone and a few seconds stale is harmless (a booking re-checks the slot and answers 409).
- `/parent/*` stays `no-store` (create_app).
"""

from __future__ import annotations

import re

from flask import Flask, Response, request

PUBLIC_MAX_AGE = 30


def _vary_on_origin(response: Response) -> None:
    names = [name.strip() for value in response.headers.getlist("Vary") for name in value.split(",") if name.strip()]
    if not any(name.lower() == "origin" for name in names):
        names.append("Origin")
    response.headers["Vary"] = ", ".join(dict.fromkeys(names))


def install(app: Flask, *, cors_paths: str | None) -> None:
    """Add the caching headers to `app`'s answers; `cors_paths` is the regex CORS covers
    (None: CORS is off and nothing varies by origin). Call before CORS is installed, so this
    runs after it and sees its headers."""
    cors = re.compile(cors_paths) if cors_paths else None

    @app.after_request
    def _cache_headers(response: Response) -> Response:
        if cors is not None and cors.match(request.path):
            _vary_on_origin(response)
        if (
            request.method in ("GET", "HEAD")
            and request.path.startswith("/public/")
            and response.status_code == 200
            and "Cache-Control" not in response.headers
        ):
            response.headers["Cache-Control"] = f"public, max-age={PUBLIC_MAX_AGE}"
        return response
