"""The identity provider's signing keys (`SUPABASE_JWKS_URL`), fetched rarely and never waited on for long.

PyJWKClient holds one lock across its network fetch and remembers nothing of a failure: with
a slow or unreachable key set every sign-in queues behind the fetch, then fetches again
itself. This key set instead
- fetches with a short timeout (`timeout`, the whole answer included) and one fetch at a time;
  a request that would wait for someone else's fetch waits at most that long;
- remembers a failure for `failure_backoff` seconds: meanwhile a key it does not hold is
  `KeySetUnavailable` at once (503), without a fetch;
- refuses an unknown `kid` at once (`UnknownKey`, 401) when the set was fetched less than
  `unknown_kid_cooldown` seconds ago: random `kid`s cost no fetch, a rotated-in key is found
  by the first token carrying it after the cooldown;
- refreshes the set every `lifespan` seconds; until that refresh succeeds the keys it holds
  stay in use (a key dropped from the set is refused once a fetch has succeeded).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from urllib.error import HTTPError

import jwt

log = logging.getLogger(__name__)


class KeySetUnavailable(Exception):
    """The key set could not be fetched (now, or recently): the token cannot be checked."""


class UnknownKey(Exception):
    """The key set, fetched recently, has no signing key with this `kid`."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # a JWKS that moves is an error, not a hop elsewhere
        return None


class KeySet:
    """Signing keys by `kid` from one JWKS URL, safe to share between threads."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 2.0,
        lifespan: float = 600.0,
        unknown_kid_cooldown: float = 60.0,
        failure_backoff: float = 30.0,
        max_bytes: int = 256 * 1024,
    ):
        self.url = url
        self.timeout = timeout
        self.lifespan = lifespan
        self.unknown_kid_cooldown = unknown_kid_cooldown
        self.failure_backoff = failure_backoff
        self.max_bytes = max_bytes
        self.fetches = 0  # attempts made (tests and logs)
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None  # last successful fetch (monotonic)
        self._failed_at: float | None = None  # last failed fetch, cleared by a success
        self._attempts = 0
        self._fetch_lock = threading.Lock()

    def signing_key(self, kid: str | None) -> jwt.PyJWK:
        """The key for `kid`; `UnknownKey` or `KeySetUnavailable` otherwise (never a long wait)."""
        kid = kid if isinstance(kid, str) else ""
        key = self._keys.get(kid)
        if key is not None:
            if self._age() >= self.lifespan and not self._failed_recently():
                # Stale: one caller refreshes, the others go on with the key they hold.
                self._refresh(wait=False)
                key = self._keys.get(kid)
                if key is None:
                    raise UnknownKey(kid)
            return key
        if self._age() < self.unknown_kid_cooldown:
            raise UnknownKey(kid)
        if self._failed_recently():
            raise KeySetUnavailable("the key set could not be fetched a moment ago")
        self._refresh(wait=True)
        key = self._keys.get(kid)
        if key is not None:
            return key
        if self._age() < self.unknown_kid_cooldown:
            raise UnknownKey(kid)
        raise KeySetUnavailable("the key set cannot be fetched")

    def _age(self) -> float:
        """Seconds since the last successful fetch (infinite before the first)."""
        return float("inf") if self._fetched_at is None else time.monotonic() - self._fetched_at

    def _failed_recently(self) -> bool:
        return self._failed_at is not None and time.monotonic() - self._failed_at < self.failure_backoff

    def _refresh(self, *, wait: bool) -> None:
        """Fetch the set unless another caller is doing so (then wait for it, briefly, or not at all)."""
        attempts_before = self._attempts
        if not self._fetch_lock.acquire(timeout=self.timeout + 0.5 if wait else -1, blocking=wait):
            return
        try:
            if self._attempts != attempts_before:
                return  # someone fetched while we waited: use their answer
            self.fetches += 1
            try:
                keys = self._fetch()
            except Exception as error:  # network, HTTP, JSON, no usable key: all mean "unavailable"
                self._failed_at = time.monotonic()
                log.warning("JWKS %s unavailable (not retried for %.0f s): %s", self.url, self.failure_backoff, error)
            else:
                self._keys, self._fetched_at, self._failed_at = keys, time.monotonic(), None
            finally:
                self._attempts += 1
        finally:
            self._fetch_lock.release()

    def _fetch(self) -> dict[str, jwt.PyJWK]:
        deadline = time.monotonic() + self.timeout
        request = urllib.request.Request(self.url, headers={"Accept": "application/json", "User-Agent": "studio-api"})
        try:
            with urllib.request.build_opener(_NoRedirect).open(request, timeout=self.timeout) as response:
                body = bytearray()
                # Read what arrives until the deadline: a server trickling bytes cannot hold us longer.
                while chunk := response.read1(65536):
                    body += chunk
                    if len(body) > self.max_bytes:
                        raise ValueError(f"the key set is larger than {self.max_bytes} bytes")
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"the key set took more than {self.timeout} s")
        except HTTPError as error:
            error.close()
            raise
        key_set = jwt.PyJWKSet.from_dict(json.loads(body))
        return {key.key_id: key for key in key_set.keys if key.key_id and key.public_key_use in ("sig", None)}
