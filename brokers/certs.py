"""Certificates made at run time for TLS tests, with the openssl command line (EC P-256
keys, PEM, valid two days): a CA, a server certificate it signs for loopback
(``localhost`` and ``127.0.0.1``), a client certificate it signs, and a second CA that
signed none of them (what an untrusted server looks like to a client given the first).
openssl missing is a RuntimeError: a TLS test fails, it never skips.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

DAYS = "2"
SERVER_NAMES = "DNS:localhost,IP:127.0.0.1"


@dataclass(frozen=True)
class Pair:
    """A certificate and its private key (unencrypted PKCS#8), PEM files."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Authority(Pair):
    def sign(self, folder: Path, name: str, *, server: bool) -> Pair:
        """A certificate for ``name`` signed by this CA: a server's (for loopback) or a
        client's (its common name is ``name``)."""
        key, csr, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.pem"
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-out", key)  # fmt: skip
        _openssl("req", "-new", "-key", key, "-out", csr, "-subj", f"/CN={name}")
        extensions = folder / f"{name}.ext"
        usage = "serverAuth" if server else "clientAuth"
        lines = [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            f"extendedKeyUsage={usage}",
        ]
        if server:
            lines.append(f"subjectAltName={SERVER_NAMES}")
        extensions.write_text("\n".join(lines) + "\n")
        _openssl("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key,
                 "-CAcreateserial", "-out", cert, "-days", DAYS, "-sha256",
                 "-extfile", extensions)  # fmt: skip
        return Pair(cert, key)


@dataclass(frozen=True)
class TlsFiles:
    """Everything a TLS test needs, in one folder."""

    ca: Authority
    server: Pair
    client: Pair
    other_ca: Authority
    """A CA that signed nothing here: trusting it alone, a client rejects the server."""


def authority(folder: Path, name: str) -> Authority:
    key, cert = folder / f"{name}.key", folder / f"{name}.pem"
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
    _openssl("req", "-new", "-x509", "-key", key, "-out", cert, "-days", DAYS, "-sha256",
             "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    return Authority(cert, key)


def make(folder: Path) -> TlsFiles:
    """A CA, a loopback server certificate and a client certificate it signs, and a CA
    that signed neither, all under ``folder`` (created if missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = authority(folder, "test-ca")
    return TlsFiles(
        ca=ca,
        server=ca.sign(folder, "server", server=True),
        client=ca.sign(folder, "client", server=False),
        other_ca=authority(folder, "other-ca"),
    )


def _openssl(*args: str | Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise RuntimeError("the TLS tests make their certificates with openssl: install it")
    done = subprocess.run(
        [binary, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.strip()[-500:]}")
