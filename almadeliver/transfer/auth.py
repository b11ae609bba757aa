"""Archive credentials: where the password comes from, and which requests may carry it.

The password is read from ``ALMA_PASSWORD``, the system keyring (service ``almadeliver``) or a prompt;
never from the command line. It is attached only to requests whose host is an archive host, and it
never appears in a repr, a log line or an error message.
"""
from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlsplit

import requests
from requests.auth import AuthBase, HTTPBasicAuth

from ..errors import ArchiveError, AuthError

KEYRING_SERVICE = "almadeliver"
PASSWORD_ENV = "ALMA_PASSWORD"


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str = field(repr=False)


def get_credentials(user: str, prompt: Callable[[str], str] = getpass.getpass) -> Credentials:
    """The password of ``user``: ALMA_PASSWORD, else the keyring (if installed), else ``prompt``."""
    password = os.environ.get(PASSWORD_ENV)
    if not password:
        try:
            import keyring
            password = keyring.get_password(KEYRING_SERVICE, user)
        except Exception:  # keyring missing, or no usable backend: fall back to the prompt
            password = None
    if not password:
        password = prompt(f"ALMA archive password for {user}: ")
    if not password:
        raise AuthError(f"no password given for {user}", f"type it at the prompt or set {PASSWORD_ENV}")
    return Credentials(user, password)


class ArchiveAuth(AuthBase):
    """Basic auth for the archive's hosts only (requests drops it on redirects to other hosts)."""

    def __init__(self, credentials: Credentials, hosts: set[str]):
        self._basic = HTTPBasicAuth(credentials.user, credentials.password)
        self.hosts = {h.lower() for h in hosts}

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        if urlsplit(r.url).netloc.lower() in self.hosts:
            return self._basic(r)
        return r

    def __repr__(self) -> str:
        return f"ArchiveAuth(hosts={sorted(self.hosts)})"


def login(session: requests.Session, archive: str, credentials: Credentials, hosts: set[str],
          timeout: float = 30.0) -> None:
    """Log in to ``archive`` (``GET /dataPortal/login``): the session keeps the cookie and the auth."""
    session.auth = ArchiveAuth(credentials, hosts | {urlsplit(archive).netloc})
    url = f"{archive.rstrip('/')}/dataPortal/login"
    try:
        r = session.get(url, timeout=timeout)
    except requests.RequestException as exc:
        raise ArchiveError(f"could not reach {url} to log in ({type(exc).__name__})",
                           "check the network or choose another mirror with --archive") from None
    if r.status_code in (401, 403):
        raise AuthError(f"the archive refused the login of {credentials.user} (HTTP {r.status_code})",
                        f"check the user name and the password ({PASSWORD_ENV}, keyring or prompt)")
    if r.status_code >= 400:
        raise ArchiveError(f"login at {url} failed with HTTP {r.status_code}", "try again later or another mirror")
