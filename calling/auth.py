"""Authenticating inbound call notifications: the Bearer JWT the calling platform signs.

Checks, in order, so nothing untrusted is acted on: a Bearer token is present; its header parses and
names RS256 (none, HS* and everything else are refused before any key is looked up); its key is one of
the platform's signing keys (OpenID configuration -> jwks_uri); signature, exp/nbf (small leeway), aud
= the bot's app id, iss = Graph or Bot Framework; `tid` present and allowed. The token is never logged.

Keys are cached: refreshed when older than `max_age`, or when a token names an unknown `kid`, but
never more often than `refetch_floor`, so a flood of forged kids cannot hammer the key endpoint.
Two hours matches Microsoft's own samples. If a refresh fails, the keys already held keep working;
with none at all the answer is 503.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from jwt import PyJWK, PyJWKSet

log = logging.getLogger("calling.auth")
ISSUERS = ("https://graph.microsoft.com", "https://api.botframework.com")
LEEWAY_SECONDS = 30


class AuthError(Exception):
    """The notification is not trusted. `status`: 401 bad token, 403 tenant not allowed, 503 no keys."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"{status}: {reason}")


@dataclass(frozen=True)
class Caller:
    """Who signed the notification: the verified tenant and issuer (and all claims, for diagnostics)."""

    tenant_id: str
    issuer: str
    claims: Mapping[str, Any]


class SigningKeys:
    """The calling platform's signing keys, fetched from its OpenID configuration and cached."""

    def __init__(
        self,
        openid_config_url: str,
        *,
        http: httpx.AsyncClient | None = None,
        max_age: float = 2 * 3600,
        refetch_floor: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = openid_config_url
        self._http = http
        self._max_age = max_age
        self._floor = refetch_floor
        self._clock = clock
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetch_count = 0

    async def get(self, kid: str | None) -> list[PyJWK]:
        """Keys to try for `kid` (all RSA keys when the token names none). Empty means unknown kid."""
        now = self._clock()
        stale = self._fetched_at is None or now - self._fetched_at > self._max_age
        unknown = kid is not None and kid not in self._keys
        if stale or unknown:
            await self._refresh(force=stale)
        if not self._keys:
            raise AuthError(503, "signing keys are unavailable")
        if kid is None:
            return list(self._keys.values())
        key = self._keys.get(kid)
        return [key] if key else []

    async def _refresh(self, *, force: bool) -> None:
        async with self._lock:
            now = self._clock()
            if self._attempted_at is not None and now - self._attempted_at < self._floor:
                return  # someone just fetched (or failed to): do not hammer the endpoint
            if not force and self._fetched_at is not None and now - self._fetched_at < self._floor:
                return
            self._attempted_at = now
            try:
                keys = await self._fetch()
            except (httpx.HTTPError, ValueError, KeyError, jwt.PyJWKSetError) as exc:
                _log_fetch_failure(self._url, exc)
                return
            self._keys = keys
            self._fetched_at = self._clock()

    async def _fetch(self) -> dict[str, PyJWK]:
        self.fetch_count += 1
        client = self._http or httpx.AsyncClient(timeout=httpx.Timeout(5.0))
        try:
            config = (await client.get(self._url)).raise_for_status().json()
            jwks = (await client.get(config["jwks_uri"])).raise_for_status().json()
        finally:
            if self._http is None:
                await client.aclose()
        keyset = PyJWKSet.from_dict(jwks)
        keys: dict[str, PyJWK] = {}
        for index, key in enumerate(keyset.keys):
            if key.key_type == "RSA":
                keys[key.key_id or f"#{index}"] = key
        if not keys:
            raise ValueError("the key set holds no RSA signing key")
        return keys


class NotificationAuthenticator:
    """Verifies the Authorization header of a notification POST and returns the verified caller."""

    def __init__(self, *, app_id: str, allowed_tenants: Collection[str], keys: SigningKeys,
                 issuers: Collection[str] = ISSUERS, leeway: float = LEEWAY_SECONDS) -> None:
        self._app_id = app_id
        self._tenants = {t.lower() for t in allowed_tenants}
        self._keys = keys
        self._issuers = tuple(issuers)
        self._leeway = leeway

    async def authenticate(self, authorization: str | None) -> Caller:
        token = _bearer(authorization)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:  # not a JWT, or a header PyJWT refuses (e.g. a non-string kid)
            raise AuthError(401, "token is not a JWT") from None
        if header.get("alg") != "RS256":
            raise AuthError(401, "token algorithm must be RS256")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise AuthError(401, "token kid is not a string")
        candidates = await self._keys.get(kid)
        if not candidates:
            raise AuthError(401, "token is signed with an unknown key")
        claims = self._decode(token, candidates)
        tenant = claims.get("tid")
        if not isinstance(tenant, str) or not tenant:
            raise AuthError(401, "token has no tenant (tid)")
        if tenant.lower() not in self._tenants:
            raise AuthError(403, "tenant is not allowed")
        return Caller(tenant_id=tenant.lower(), issuer=str(claims["iss"]), claims=claims)

    def _decode(self, token: str, candidates: list[PyJWK]) -> dict[str, Any]:
        last: Exception | None = None
        for key in candidates:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key=key.key,
                    algorithms=["RS256"],
                    audience=self._app_id,
                    issuer=self._issuers,
                    leeway=self._leeway,
                    options={"require": ["exp", "aud", "iss"]},
                )
                return claims
            except jwt.InvalidSignatureError as exc:
                last = exc
            except jwt.ExpiredSignatureError:
                raise AuthError(401, "token has expired") from None
            except jwt.ImmatureSignatureError:
                raise AuthError(401, "token is not valid yet") from None
            except jwt.InvalidAudienceError:
                raise AuthError(401, "token audience is not this bot") from None
            except jwt.InvalidIssuerError:
                raise AuthError(401, "token issuer is not the calling platform") from None
            except jwt.MissingRequiredClaimError as exc:
                raise AuthError(401, f"token lacks the {exc.claim} claim") from None
            except jwt.InvalidTokenError:
                raise AuthError(401, "token is invalid") from None
        raise AuthError(401, "token signature is invalid") from last


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise AuthError(401, "missing Authorization header")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError(401, "Authorization must be a Bearer token")
    return token.strip()


def _log_fetch_failure(url: str, exc: Exception) -> None:
    log.warning("fetching signing keys from %s failed: %s", url, exc)
