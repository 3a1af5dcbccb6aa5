"""SHA-256 without OpenSSL: CPython's own implementation (_sha2 from 3.12, _sha256 before) when there is one, else
hashlib's. Importing hashlib maps OpenSSL's libcrypto (3.4 MB resident), which a daemon with TLS off needs for
nothing else. The digest is the same."""

from __future__ import annotations


def sha256(data: bytes = b""):
    try:
        from _sha2 import sha256 as impl
    except ImportError:
        try:
            from _sha256 import sha256 as impl
        except ImportError:
            from hashlib import sha256 as impl
    return impl(data)
