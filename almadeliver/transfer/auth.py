"""Archive credentials: where the password comes from, where it is checked, which requests carry it.

The password is read from ``ALMA_PASSWORD``, the system keyring (service ``almadeliver``) or a prompt;
never from the command line. It is checked at ALMA's Keycloak token endpoint before any transfer,
attached only to requests whose host is one of the configured archive's mirrors (never to a host a
plan file names), and it never appears in a repr, a log line or an error message.
"""
from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlsplit

import requests
from requests.auth import AuthBase, HTTPBasicAuth

from ..archive.client import DEFAULT_ARCHIVE, MIRRORS, mirror_list
from ..errors import ArchiveError, AuthError

KEYRING_SERVICE = "almadeliver"
PASSWORD_ENV = "ALMA_PASSWORD"


@dataclass(frozen=True)
class Credentials:
    """An ALMA archive account; the password never shows in a repr."""
    user: str
    password: str = field(repr=False)


def get_credentials(user: str, prompt: Callable[[str], str] = getpass.getpass) -> Credentials:
    """The password of ``user``: ALMA_PASSWORD, else the keyring (if installed), else ``prompt``.

    Parameters
    ----------
    user : str
        The ALMA archive user name.
    prompt : Callable[[str], str], default getpass.getpass
        Asks for the password when neither ALMA_PASSWORD nor the keyring has one.

    Returns
    -------
    Credentials
        The user name and password (the password is never logged).

    Raises
    ------
    AuthError
        No password was given (empty answer at the prompt).
    """
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
    """Basic auth for the archive's hosts only (requests drops it on redirects to other hosts).

    Parameters
    ----------
    credentials : Credentials
        The user name and password.
    hosts : set[str]
        The host names that may receive them (``archive_hosts``).
    """

    def __init__(self, credentials: Credentials, hosts: set[str]):
        self._basic = HTTPBasicAuth(credentials.user, credentials.password)
        self.hosts = {h.lower() for h in hosts}

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        """Add the Basic credentials when the request goes to one of ``hosts``."""
        if urlsplit(r.url).netloc.lower() in self.hosts:
            return self._basic(r)
        return r

    def __repr__(self) -> str:
        return f"ArchiveAuth(hosts={sorted(self.hosts)})"


AUTH_HOSTS = ("https://asa.alma.cl", "https://rh-cas.alma.cl")   # ALMA's Keycloak, in astroquery's order
TOKEN_PATH = "/auth/realms/ALMA/protocol/openid-connect/token"


def auth_urls(archive: str) -> list[str]:
    """Where the password is checked for ``archive``: ALMA's Keycloak hosts for the ALMA mirrors
    (ALMA-FACTS section 2, from astroquery 0.4.11 alma/core.py); the archive itself otherwise (a
    local archive implements the same endpoint).

    Parameters
    ----------
    archive : str
        The mirror (``eso``, ``nrao``, ``naoj``) or archive root URL.

    Returns
    -------
    list[str]
        The login endpoints to try, in order.
    """
    root = archive.rstrip("/")
    known = {m.rstrip("/") for m in (DEFAULT_ARCHIVE, *MIRRORS.values())}
    return [f"{h}{TOKEN_PATH}" for h in AUTH_HOSTS] if root in known else [f"{root}{TOKEN_PATH}"]


def archive_hosts(archive: str) -> set[str]:
    """The hosts that may receive the credentials: the mirrors ``--archive`` names (``mirror_list``).

    Parameters
    ----------
    archive : str
        The mirror (``eso``, ``nrao``, ``naoj``) or archive root URL.

    Returns
    -------
    set[str]
        The host names (no scheme, no port).
    """
    return {urlsplit(m).netloc.lower() for m in mirror_list(archive)}


def login(session: requests.Session, archive: str, credentials: Credentials, hosts: set[str] | None = None,
          timeout: float = 30.0) -> None:
    """Check the password the way the ALMA archive does, then attach Basic credentials for its hosts.

    ``POST <auth host>/auth/realms/ALMA/protocol/openid-connect/token`` with the form
    ``username, password, grant_type=password, client_id=oidc`` (ALMA-FACTS section 2); the answer
    is JSON with ``access_token``, or ``error``/``error_description`` ("Invalid user credentials").
    Proprietary files are then requested with HTTP Basic credentials, on ``hosts`` only.

    Parameters
    ----------
    session : requests.Session
        The session that will fetch the files; its ``auth`` is set.
    archive : str
        The mirror root URL (``mirror_list(--archive)[0]``).
    credentials : Credentials
        User and password.
    hosts : set of str, optional
        The hosts (``netloc``) that may receive the credentials; default: the mirrors of ``archive``.
        Never the hosts named by a plan file's URLs.
    timeout : float
        Seconds per request.

    Raises
    ------
    AuthError
        The password was refused: one line, before any transfer.
    ArchiveError
        No authentication host answered.
    """
    allowed = {h.lower() for h in (hosts if hosts is not None else archive_hosts(archive))}
    last = "no authentication host"
    for url in auth_urls(archive):
        form = {"username": credentials.user, "password": credentials.password,
                "grant_type": "password", "client_id": "oidc"}
        try:
            r = session.post(url, data=form, timeout=timeout, auth=None)
        except requests.RequestException as exc:
            last = f"{urlsplit(url).netloc} did not answer ({type(exc).__name__})"
            continue
        try:
            answer = r.json()
        except ValueError:
            answer = {}
        if not isinstance(answer, dict):
            answer = {}
        if "access_token" in answer and r.ok:
            session.auth = ArchiveAuth(credentials, allowed)
            return
        if "error" in answer or r.status_code in (400, 401, 403):
            why = answer.get("error_description") or answer.get("error") or f"HTTP {r.status_code}"
            raise AuthError(f"the archive refused the login of {credentials.user} ({why})",
                            f"check the user name and the password ({PASSWORD_ENV}, keyring or prompt)")
        last = f"{urlsplit(url).netloc} answered HTTP {r.status_code}"
    raise ArchiveError(f"could not log in: {last}", "check the network, or try again later")
