"""A throwaway certificate authority and leaf certificates, made with the openssl CLI.

Keys are ECDSA P-256, which openssl generates in milliseconds. Leaf certificates
carry only DNS subjectAltNames (wildcards such as ``*.pythonhosted.org`` included)
and are valid for 30 days, long enough for any test run.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterable
from pathlib import Path

from tests.lab.files import write_atomically
from tests.lab.netns import run_checked

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
VALID_DAYS = "30"
_KEY_ARGS = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

_LEAF_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
subjectAltName = {san}
"""


class TestCa:
    """A CA whose certificate tests pass to clients with ``--cacert``."""

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.cert_path = directory / "ca.pem"
        self.key_path = directory / "ca.key"
        self._leaves: dict[frozenset[str], Path] = {}

    @classmethod
    def create(cls, directory: Path) -> TestCa:
        """Create the CA key and self-signed certificate in ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        ca = cls(directory)
        run_checked(
            [
                OPENSSL, "req", "-x509", *_KEY_ARGS,
                "-keyout", str(ca.key_path), "-out", str(ca.cert_path),
                "-days", VALID_DAYS, "-subj", "/CN=runta lab test CA",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            ]
        )  # fmt: skip
        return ca

    def issue(self, names: Iterable[str]) -> Path:
        """Return a PEM file holding a leaf certificate for ``names`` and its key.

        One file per distinct set of names, reused on later calls. Certificate and key
        share the file so a server reloads both from one atomic rename.
        """
        name_set = frozenset(name.lower().rstrip(".") for name in names)
        if not name_set:
            raise ValueError("a leaf certificate needs at least one DNS name")
        cached = self._leaves.get(name_set)
        if cached is not None:
            return cached

        ordered = sorted(name_set)
        leaf_dir = self.directory / "leaves"
        leaf_dir.mkdir(exist_ok=True)
        stem = f"leaf-{len(self._leaves):04d}"
        key_path = leaf_dir / f"{stem}.key"
        csr_path = leaf_dir / f"{stem}.csr"
        cert_path = leaf_dir / f"{stem}.crt"
        ext_path = leaf_dir / f"{stem}.ext"
        ext_path.write_text(
            _LEAF_EXTENSIONS.format(san=", ".join(f"DNS:{name}" for name in ordered))
        )

        run_checked(
            [
                OPENSSL, "req", "-new", *_KEY_ARGS,
                "-keyout", str(key_path), "-out", str(csr_path),
                "-subj", f"/CN={ordered[0]}",
            ]
        )  # fmt: skip
        run_checked(
            [
                OPENSSL, "x509", "-req", "-in", str(csr_path),
                "-CA", str(self.cert_path), "-CAkey", str(self.key_path),
                "-set_serial", f"0x{secrets.token_hex(16)}",
                "-days", VALID_DAYS, "-extfile", str(ext_path), "-out", str(cert_path),
            ]
        )  # fmt: skip

        bundle_path = leaf_dir / f"{stem}.pem"
        write_atomically(bundle_path, cert_path.read_bytes() + key_path.read_bytes())
        self._leaves[name_set] = bundle_path
        return bundle_path
