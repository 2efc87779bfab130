"""The inbound authentication matrix, with real RS256 tokens and keys served over loopback."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from calling.auth import AuthError, NotificationAuthenticator, SigningKeys
from tests.stubs import APP_ID, OTHER_TENANT, TENANT_ID, LoopbackServer, Signer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(server: LoopbackServer, clock: Clock | None = None, *,
         tenants: tuple[str, ...] = (TENANT_ID,)) -> NotificationAuthenticator:
    keys = SigningKeys(server.openid_url, clock=clock or Clock(), max_age=3 * 3600, refetch_floor=60)
    return NotificationAuthenticator(app_id=APP_ID, allowed_tenants=tenants, keys=keys)


async def refused(auth: NotificationAuthenticator, header: str | None) -> AuthError:
    with pytest.raises(AuthError) as info:
        await auth.authenticate(header)
    return info.value


async def test_valid_token_gives_the_verified_tenant(server: LoopbackServer, signer: Signer) -> None:
    caller = await make(server).authenticate(f"Bearer {signer.token()}")
    assert caller.tenant_id == TENANT_ID
    assert caller.issuer == "https://api.botframework.com"


async def test_graph_issuer_is_accepted_too(server: LoopbackServer, signer: Signer) -> None:
    caller = await make(server).authenticate(f"Bearer {signer.token(iss='https://graph.microsoft.com')}")
    assert caller.issuer == "https://graph.microsoft.com"


def _unsigned(header: dict[str, str], claims: dict[str, object]) -> str:
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return f"{part(header)}.{part(claims)}."


@pytest.mark.parametrize(("header", "status", "reason"), [
    (None, 401, "missing Authorization"),
    ("", 401, "missing Authorization"),
    ("Basic dXNlcjpwYXNz", 401, "Bearer"),
    ("Bearer", 401, "Bearer"),
    ("Bearer not-a-jwt", 401, "not a JWT"),
    ("Bearer " + _unsigned({"alg": "none", "typ": "JWT"}, {"aud": APP_ID, "tid": TENANT_ID}), 401, "RS256"),
])
async def test_malformed_headers(server: LoopbackServer, header: str | None, status: int, reason: str) -> None:
    error = await refused(make(server), header)
    assert error.status == status
    assert reason in error.reason
    assert server.key_fetches() == 0, "a malformed token must be refused before any key lookup"


async def test_hs256_is_refused_before_key_lookup(server: LoopbackServer, signer: Signer) -> None:
    # The classic confusion attack: HMAC-sign with the public key's bytes.
    forged = jwt.encode({"aud": APP_ID, "iss": "https://api.botframework.com", "tid": TENANT_ID,
                         "exp": int(time.time()) + 600}, "secret-known-to-attacker-000000000", algorithm="HS256",
                        headers={"kid": signer.kid})
    error = await refused(make(server), f"Bearer {forged}")
    assert (error.status, error.reason) == (401, "token algorithm must be RS256")
    assert server.key_fetches() == 0


async def test_bad_signature(server: LoopbackServer, signer: Signer) -> None:
    forger = Signer(kid=signer.kid)  # same kid, different key: a forged notification
    error = await refused(make(server), f"Bearer {forger.token()}")
    assert (error.status, error.reason) == (401, "token signature is invalid")


@pytest.mark.parametrize(("claims", "reason"), [
    ({"lifetime": -120}, "expired"),
    ({"not_before": 300}, "not valid yet"),
    ({"aud": "00000000-0000-0000-0000-000000000000"}, "audience"),
    ({"iss": "https://login.microsoftonline.com/x/v2.0"}, "issuer"),
    ({"tid": None}, "no tenant"),
])
async def test_claims(server: LoopbackServer, signer: Signer, claims: dict[str, object], reason: str) -> None:
    error = await refused(make(server), f"Bearer {signer.token(**claims)}")  # type: ignore[arg-type]
    assert error.status == 401
    assert reason in error.reason


async def test_small_leeway_accepts_slight_clock_skew(server: LoopbackServer, signer: Signer) -> None:
    caller = await make(server).authenticate(f"Bearer {signer.token(lifetime=-10)}")
    assert caller.tenant_id == TENANT_ID


async def test_tenant_not_allowed_is_403(server: LoopbackServer, signer: Signer) -> None:
    error = await refused(make(server), f"Bearer {signer.token(tid=OTHER_TENANT)}")
    assert (error.status, error.reason) == (403, "tenant is not allowed")


async def test_allowed_tenants_list(server: LoopbackServer, signer: Signer) -> None:
    auth = make(server, tenants=(TENANT_ID, OTHER_TENANT.upper()))
    assert (await auth.authenticate(f"Bearer {signer.token(tid=OTHER_TENANT)}")).tenant_id == OTHER_TENANT


async def test_keys_are_cached(server: LoopbackServer, signer: Signer) -> None:
    auth = make(server)
    for _ in range(5):
        await auth.authenticate(f"Bearer {signer.token()}")
    assert server.key_fetches() == 1


async def test_unknown_kid_refetches_once_then_verifies(server: LoopbackServer, signer: Signer) -> None:
    clock = Clock()
    auth = make(server, clock)
    await auth.authenticate(f"Bearer {signer.token()}")
    rotated = Signer()
    server.signers.append(rotated)  # the platform rotated its keys
    clock.now += 61
    caller = await auth.authenticate(f"Bearer {rotated.token()}")
    assert caller.tenant_id == TENANT_ID
    assert server.key_fetches() == 2


async def test_flood_of_unknown_kids_does_not_hammer_the_key_endpoint(server: LoopbackServer,
                                                                       signer: Signer) -> None:
    clock = Clock()
    auth = make(server, clock)
    await auth.authenticate(f"Bearer {signer.token()}")
    clock.now += 120
    for i in range(50):
        error = await refused(auth, f"Bearer {signer.token(kid=f'forged-{i}')}")
        assert error.reason == "token is signed with an unknown key"
    assert server.key_fetches() == 2, "one refetch for the first unknown kid, then the floor holds"
    assert (await auth.authenticate(f"Bearer {signer.token()}")).tenant_id == TENANT_ID


async def test_keys_refresh_after_max_age(server: LoopbackServer, signer: Signer) -> None:
    clock = Clock()
    auth = make(server, clock)
    await auth.authenticate(f"Bearer {signer.token()}")
    clock.now += 3 * 3600 + 1
    await auth.authenticate(f"Bearer {signer.token()}")
    assert server.key_fetches() == 2


async def test_key_endpoint_down_is_503(server: LoopbackServer, signer: Signer) -> None:
    server.jwks_available = False
    error = await refused(make(server), f"Bearer {signer.token()}")
    assert (error.status, error.reason) == (503, "signing keys are unavailable")


async def test_key_endpoint_down_later_keeps_cached_keys(server: LoopbackServer, signer: Signer) -> None:
    clock = Clock()
    auth = make(server, clock)
    await auth.authenticate(f"Bearer {signer.token()}")
    server.jwks_available = False
    clock.now += 4 * 3600  # stale: a refresh is attempted and fails
    assert (await auth.authenticate(f"Bearer {signer.token()}")).tenant_id == TENANT_ID


async def test_token_without_kid_is_tried_against_each_key(server: LoopbackServer, signer: Signer) -> None:
    server.signers.insert(0, Signer())
    caller = await make(server).authenticate(f"Bearer {signer.token(kid=None)}")
    assert caller.tenant_id == TENANT_ID


async def test_token_never_appears_in_logs(server: LoopbackServer, signer: Signer,
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    token = Signer(kid=signer.kid).token()
    await refused(make(server), f"Bearer {token}")
    assert token not in caplog.text
    assert token.split(".")[2] not in caplog.text


async def test_a_header_pyjwt_refuses_is_401_not_500(server: LoopbackServer, signer: Signer) -> None:
    odd = _unsigned({"alg": "RS256", "kid": 5}, {"aud": APP_ID}) + "c2ln"  # PyJWT will not even encode this
    error = await refused(make(server), f"Bearer {odd}")
    assert (error.status, error.reason) == (401, "token is not a JWT")
