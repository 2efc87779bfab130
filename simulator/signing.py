"""The calling platform's token issuer: an RSA key that signs every notification the simulator posts.

Its OpenID configuration and JWKS are served by the simulator, so the bot's real authentication code
(`calling.auth`, pointed at them through CALLING_OPENID_CONFIG_URL) verifies each POST exactly as it
verifies Microsoft's.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

#: The issuer Graph's calling notifications carry (see ../shared/reference/graph-calling.md section 2).
ISSUER = "https://api.botframework.com"


class Signer:
    """An RSA key pair with a kid: signs notification tokens and publishes its public key as a JWK."""

    def __init__(self, kid: str | None = None) -> None:
        self.kid = kid or f"sim-{uuid.uuid4().hex[:8]}"
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.private_key.public_key()))
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return jwk

    def token(self, *, aud: str, tid: str | None, iss: str = ISSUER, lifetime: int = 600,
              not_before: int = -60, kid: str | None = "default", now: float | None = None,
              **extra: Any) -> str:
        """A signed JWT. Times are wall-clock: the bot checks exp/nbf against its own clock."""
        issued = int(time.time() if now is None else now)
        claims: dict[str, Any] = {"aud": aud, "iss": iss, "iat": issued, "nbf": issued + not_before,
                                  "exp": issued + lifetime, **extra}
        if tid is not None:
            claims["tid"] = tid
        headers = {"kid": self.kid if kid == "default" else kid} if kid is not None else {}
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers=headers)


def openid_configuration(base_url: str) -> dict[str, Any]:
    """The subset of an OpenID configuration the bot reads: its issuer and where the keys are."""
    return {"issuer": ISSUER, "jwks_uri": f"{base_url}/v1/keys",
            "id_token_signing_alg_values_supported": ["RS256"]}
