"""TLS material at rest: Fernet with a key derived from settings.ERU_ENCRYPTION_KEY."""

from __future__ import annotations

import base64
import hashlib
from functools import cache

from cryptography.fernet import Fernet
from django.conf import settings


@cache
def _fernet(secret: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest()))


def encrypt(text: str) -> str:
    if not text:
        return ""
    return _fernet(settings.ERU_ENCRYPTION_KEY).encrypt(text.encode()).decode()


def decrypt(token: str) -> str:
    if not token:
        return ""
    return _fernet(settings.ERU_ENCRYPTION_KEY).decrypt(token.encode()).decode()
