"""The test bed's OIDC issuer: GitHub-like or email tokens, signed, and their check."""

from __future__ import annotations

import hashlib
import json
import uuid

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from .common import (
    AUDIENCE,
    Refused,
    b64url,
    canonical_json,
    spki,
    unb64url,
)

# -- OIDC tokens ----------------------------------------------------------------------------

class Issuer:
    """The OIDC side: one ES256 key, its JWKS, and tokens signed with it."""

    def __init__(self, url: str):
        self.url = url
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.kid = hashlib.sha256(spki(self.key.public_key())).hexdigest()[:16]

    def discovery(self) -> dict:
        return {"issuer": self.url, "jwks_uri": f"{self.url}/jwks",
                "subject_types_supported": ["public", "pairwise"],
                "response_types_supported": ["id_token"],
                "claims_supported": ["sub", "aud", "exp", "iat", "iss", "jti", "nbf", "ref",
                                     "repository", "repository_owner", "workflow_ref",
                                     "job_workflow_ref", "sha", "event_name", "email",
                                     "email_verified"],
                "id_token_signing_alg_values_supported": ["ES256"],
                "scopes_supported": ["openid"]}

    def jwks(self) -> dict:
        numbers = self.key.public_key().public_numbers()
        return {"keys": [{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig",
                          "kid": self.kid, "x": b64url(numbers.x.to_bytes(32, "big")),
                          "y": b64url(numbers.y.to_bytes(32, "big"))}]}

    def sign(self, claims: dict) -> str:
        header = {"alg": "ES256", "kid": self.kid, "typ": "JWT"}
        signing_input = f"{b64url(canonical_json(header))}.{b64url(canonical_json(claims))}"
        r, s = utils.decode_dss_signature(
            self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def github_claims(issuer: str, repository: str, ref: str, now: int, lifetime: int) -> dict:
    """The claims of a GitHub Actions ID token for a push to ``ref`` (values as GitHub sets
    them; ids and digests fixed, made up)."""
    owner = repository.split("/", 1)[0]
    workflow_ref = f"{repository}/.github/workflows/sign.yml@{ref}"
    sha = hashlib.sha1(f"{repository}@{ref}".encode()).hexdigest()
    return {"jti": str(uuid.uuid4()), "sub": f"repo:{repository}:ref:{ref}", "aud": AUDIENCE,
            "ref": ref, "sha": sha, "repository": repository, "repository_owner": owner,
            "repository_owner_id": "190001", "repository_id": "730001",
            "repository_visibility": "public", "run_id": "9000000001", "run_number": "7",
            "run_attempt": "1", "runner_environment": "github-hosted", "actor": "octocat",
            "actor_id": "583231", "workflow": "sign", "head_ref": "", "base_ref": "",
            "event_name": "push", "ref_type": "branch", "ref_protected": "true",
            "workflow_ref": workflow_ref, "workflow_sha": sha, "job_workflow_ref": workflow_ref,
            "job_workflow_sha": sha, "iss": issuer, "nbf": now - 5, "iat": now,
            "exp": now + lifetime}


def email_claims(issuer: str, email: str, verified: bool, now: int, lifetime: int) -> dict:
    return {"iss": issuer, "sub": hashlib.sha256(email.encode()).hexdigest()[:20],
            "aud": AUDIENCE, "email": email, "email_verified": verified, "iat": now,
            "nbf": now - 5, "exp": now + lifetime, "jti": str(uuid.uuid4())}


def verify_token(token: str, jwks: dict, issuer: str, audience: str, now: float) -> dict:
    """What Fulcio checks of an ID token: its ES256 signature with a key of the issuer's JWKS
    document, ``iss``, ``aud``, ``exp`` and ``nbf``. Returns the claims; raises Refused(401)."""
    def refuse(why: str):
        return Refused(401, f"There was an error processing the identity token: {why}")

    try:
        head_b64, body_b64, sig_b64 = token.split(".")
        header, claims = json.loads(unb64url(head_b64)), json.loads(unb64url(body_b64))
        signature = unb64url(sig_b64)
    except (ValueError, AttributeError):
        raise refuse("not a JWS compact serialization") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise refuse("not a JWT")
    if header.get("alg") != "ES256" or len(signature) != 64:
        raise refuse(f"unsupported algorithm {header.get('alg')!r}")
    keys = [k for k in jwks["keys"] if header.get("kid") in (None, k["kid"])]
    der = utils.encode_dss_signature(int.from_bytes(signature[:32], "big"),
                                     int.from_bytes(signature[32:], "big"))
    for jwk in keys:
        key = ec.EllipticCurvePublicNumbers(int.from_bytes(unb64url(jwk["x"]), "big"),
                                            int.from_bytes(unb64url(jwk["y"]), "big"),
                                            ec.SECP256R1()).public_key()
        try:
            key.verify(der, f"{head_b64}.{body_b64}".encode(), ec.ECDSA(hashes.SHA256()))
            break
        except InvalidSignature:
            continue
    else:
        raise refuse("failed to verify signature")
    if claims.get("iss") != issuer:
        raise refuse(f"oidc: id token issued by a different provider, expected {issuer!r} "
                     f"got {claims.get('iss')!r}")
    aud = claims.get("aud")
    if audience not in (aud if isinstance(aud, list) else [aud]):
        raise refuse(f"oidc: expected audience {audience!r} got {aud!r}")
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if not isinstance(exp, (int, float)) or now > exp:
        raise refuse(f"oidc: token is expired (Token Expiry: {exp})")
    if isinstance(nbf, (int, float)) and now < nbf:
        raise refuse(f"oidc: current time before the nbf (not before) time: {nbf}")
    return claims
