"""Helpers setup.ps1 runs on the media VM with the worker's venv Python (not part of the worker's wheel).

    python vmtool.py pem --pfx FILE --cert OUT --key OUT   (the PFX password on standard input, one line)
    python vmtool.py health --port 9441 [--timeout 60]

`pem` turns the certificate the Key Vault extension installed (exported by setup.ps1 as a PFX with a one-time
password) into what the worker's HTTPS endpoint loads (mediavm/__main__.py tls_context): the leaf certificate
followed by its intermediates, and the unencrypted private key (PKCS#8). setup.ps1 sets the key file's ACL before
the key is written (the folder) and after (the file). `health` asks the local worker's GET /health over loopback
HTTPS (the certificate names the public FQDN, not 127.0.0.1, so it is not verified: this only sees whether the
worker answers) and prints its JSON.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def pem(pfx: Path, cert_out: Path, key_out: Path, password: bytes) -> int:
    """Write the PEM files; returns how many certificates the chain file holds."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    key, leaf, extra = pkcs12.load_key_and_certificates(pfx.read_bytes(), password)
    if key is None or leaf is None:
        raise SystemExit(f"{pfx} holds no private key and certificate")
    # Intermediates only: a self-signed root is the client's to trust, not ours to send.
    chain = [leaf] + [c for c in extra if c.subject != c.issuer and c != leaf]

    def encoded(cert: x509.Certificate) -> bytes:
        return cert.public_bytes(serialization.Encoding.PEM)

    cert_out.write_bytes(b"".join(encoded(c) for c in chain))
    key_out.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return len(chain)


def health(port: int, timeout: float) -> dict[str, object]:
    """The worker's /health body, waiting up to `timeout` seconds for it to answer at all (200 or 503)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # loopback only: see the module docstring
    url = f"https://127.0.0.1:{port}/health"
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, context=context, timeout=5) as response:
                body: dict[str, object] = json.load(response)
            return body
        except urllib.error.HTTPError as exc:  # 503 while draining still answers with the JSON
            drained: dict[str, object] = json.load(exc)
            return drained
        except (OSError, ValueError) as exc:
            if time.monotonic() >= deadline:
                raise SystemExit(f"the worker does not answer {url}: {exc}") from exc
            time.sleep(2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vmtool")
    commands = parser.add_subparsers(dest="command", required=True)
    to_pem = commands.add_parser("pem", help="PFX (password on stdin) -> PEM chain and key")
    to_pem.add_argument("--pfx", type=Path, required=True)
    to_pem.add_argument("--cert", type=Path, required=True)
    to_pem.add_argument("--key", type=Path, required=True)
    ask = commands.add_parser("health", help="GET /health of the local worker")
    ask.add_argument("--port", type=int, required=True)
    ask.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    if args.command == "pem":
        password = sys.stdin.readline().rstrip("\r\n").encode()
        count = pem(args.pfx, args.cert, args.key, password)
        print(f"wrote {args.cert} ({count} certificate(s)) and {args.key}")
        return 0
    print(json.dumps(health(args.port, args.timeout)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
