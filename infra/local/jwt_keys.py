"""The local stack's token issuer: an RSA key pair that signs test and demo tokens, and its JWKS.

    jwt_keys.py DIR    writes DIR/private.pem and DIR/jwks.json unless they exist

Local only (.stack/ is not committed): deployed, tokens come from the platform's identity
provider and API Gateway's JWT authorizer reads its JWKS. The key id is the key's thumbprint.
"""

import base64
import hashlib
import json
import pathlib
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def b64url(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def main(directory: str) -> None:
    out = pathlib.Path(directory)
    if (out / "private.pem").exists() and (out / "jwks.json").exists():
        return
    out.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = key.public_key().public_numbers()
    n, e = b64url(numbers.n), b64url(numbers.e)
    # RFC 7638 thumbprint: the required members in lexicographic order, no whitespace.
    kid = base64.urlsafe_b64encode(
        hashlib.sha256(json.dumps({"e": e, "kty": "RSA", "n": n}, separators=(",", ":")).encode()).digest()
    ).rstrip(b"=").decode()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (out / "private.pem").write_bytes(pem)
    (out / "private.pem").chmod(0o600)
    jwks = {"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e}]}
    (out / "jwks.json").write_text(json.dumps(jwks, indent=2) + "\n")
    (out / "kid").write_text(kid + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
