"""Certificates the TLS tests make for themselves (cryptography): a CA, server certificates it
signs (good, expired, for another host), one from a CA the client does not know, and a client
certificate for mTLS. Written as PEM files under one folder."""

from __future__ import annotations

import datetime as dt
import ipaddress
import pathlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class Pair:
    cert: str
    key: str


@dataclass
class Certs:
    ca: str            # the CA the client is given with --cacert
    good: Pair         # 127.0.0.1 and localhost, valid now
    expired: Pair      # the same names, expired yesterday
    wrong_host: Pair   # valid, for other.example only
    unknown_ca: Pair   # valid names, signed by a CA the client never sees
    client: Pair       # a client certificate from the CA (mTLS)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(folder: pathlib.Path, stem: str, cert, key) -> Pair:
    c, k = folder / f"{stem}.pem", folder / f"{stem}.key"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return Pair(str(c), str(k))


def _ca(cn: str, now: dt.datetime):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def _leaf(ca, ca_key, cn: str, names: list, before: dt.datetime, after: dt.datetime,
          usage=ExtendedKeyUsageOID.SERVER_AUTH):
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(before).not_valid_after(after)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca_key.public_key()), critical=False))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def make_certs(folder: pathlib.Path) -> Certs:
    now = dt.datetime.now(dt.timezone.utc)
    day = dt.timedelta(days=1)
    ca, ca_key = _ca("crestline test CA", now)
    other, other_key = _ca("a CA nobody trusts", now)
    here = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    ca_path = folder / "ca.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return Certs(
        ca=str(ca_path),
        good=_write(folder, "good", *_leaf(ca, ca_key, "localhost", here, now - day,
                                            now + 7 * day)),
        expired=_write(folder, "expired", *_leaf(ca, ca_key, "localhost", here, now - 9 * day,
                                                  now - day)),
        wrong_host=_write(folder, "wrong-host", *_leaf(
            ca, ca_key, "other.example", [x509.DNSName("other.example")], now - day, now + day)),
        unknown_ca=_write(folder, "unknown-ca", *_leaf(other, other_key, "localhost", here,
                                                        now - day, now + day)),
        client=_write(folder, "client", *_leaf(ca, ca_key, "crestline client", [], now - day,
                                                now + day, ExtendedKeyUsageOID.CLIENT_AUTH)),
    )
