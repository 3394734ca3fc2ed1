"""What is kept of a URL and of custom properties: no secrets, before anything is stored or produced.

Pages carry secrets in their URLs: password-reset and magic-login tokens,
``?email=``, session ids, OAuth's ``#access_token=``. Collect cleans every
event before it reaches Kafka, so the topic, ClickHouse and the dead-letter
table only ever hold the cleaned form.

- **Query strings** (of the page URL, the referrer, and a click's ``href``)
  keep only allowed parameters: ``utm_*``, ``ref``, ``source``, and the names
  a project lists (``Project.keep_params``). Click ids (``gclid``,
  ``fbclid``, ...) stay as a bare flag, without their value. Everything else
  is dropped.
- **A kept value that looks like an e-mail address or a token** becomes
  :data:`REDACTED` (see :func:`looks_secret`).
- **Fragments:** a route (``#/cart``, ``#!/cart``) is kept with its own query
  cleaned by the same rules; any other fragment is dropped.
- **Custom properties** named like a secret (:data:`SECRET_NAME`) are
  redacted whatever their value, and any property value that is an e-mail
  address is redacted too, at every nesting level.

docs/security.md states these rules; the unit tests hold the examples.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from itertools import pairwise
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

REDACTED = "redacted"
DEFAULT_PARAMS = frozenset({"ref", "source"})
KEPT_PREFIXES = ("utm_",)
CLICK_IDS = frozenset(
    {"gclid", "gbraid", "wbraid", "dclid", "fbclid", "msclkid", "ttclid", "twclid", "li_fat_id", "yclid", "epik"}
)
MAX_KEEP_PARAMS = 50
PARAM_NAME = re.compile(r"[A-Za-z0-9_.\-\[\]]{1,64}")
SECRET_NAME = re.compile(r"e-?mail|token|passw|pwd|secret|api[-_]?key|credential", re.IGNORECASE)
_EMAIL = re.compile(r"[^@\s/?#&=]+@[^@\s/?#&=]+\.[A-Za-z]{2,}")
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9+/=_.~-]+")
_SEPARATORS = re.compile(r"[+/=_.~-]")
_HEX_RUN = re.compile(r"[0-9a-fA-F]{16,}")


def looks_secret(value: str) -> bool:
    """An e-mail address anywhere in ``value``, or a token: at least 16 letters and digits in
    one unbroken string of token characters that is a long hex run, starts like a JWT (``eyJ``), or
    switches between lower case, upper case and digits at least once every three characters (a
    capital starting a lower-case word is no switch) (words
    and campaign names like ``black_friday_2025`` switch far less often)."""
    if "@" in value and _EMAIL.search(value):
        return True
    if len(value) < 16 or not _TOKEN_CHARS.fullmatch(value):
        return False
    if value.startswith("eyJ") or (_HEX_RUN.search(value) and any(c.isdigit() for c in value)):
        return True
    letters = _SEPARATORS.sub("", value)
    if len(letters) < 16:
        return False
    switches = sum(_switch(a, b) for a, b in pairwise(letters))
    return switches * 3 >= len(letters)


def _kind(char: str) -> int:
    return 0 if char.islower() else 1 if char.isupper() else 2


def _switch(a: str, b: str) -> bool:
    """Another kind of character, except a capital's word going on in lower case (``CamelCase``)."""
    return _kind(a) != _kind(b) and not (a.isupper() and b.islower())


@lru_cache(maxsize=1024)
def keep_set(names: tuple[str, ...]) -> frozenset[str]:
    """The parameter names a project keeps (its own and the defaults), in lower case; one object per
    list, so :func:`clean_url`'s cache finds it again."""
    return DEFAULT_PARAMS | {name.lower() for name in names}


def _kept(name: str, keep: frozenset[str]) -> bool:
    return name in keep or name.startswith(KEPT_PREFIXES)


def clean_query(query: str, keep: frozenset[str]) -> str:
    """The allowed parameters of a query string (without ``?``), in their order; click ids as flags."""
    if not query:
        return ""
    out = []
    for pair in query.split("&"):
        if not pair:
            continue
        raw_name, _, raw_value = pair.partition("=")
        name = unquote_plus(raw_name).lower()
        if name in CLICK_IDS:
            out.append(raw_name)
        elif _kept(name, keep):
            out.append(f"{raw_name}={REDACTED}" if looks_secret(unquote_plus(raw_value)) else pair)
    return "&".join(out)


def _clean_fragment(fragment: str, keep: frozenset[str]) -> str:
    if not fragment.startswith(("/", "!/")):
        return ""
    route, mark, query = fragment.partition("?")
    cleaned = clean_query(query, keep) if mark else ""
    return f"{route}?{cleaned}" if cleaned else route


@lru_cache(maxsize=8192)
def clean_url(url: str, keep: frozenset[str]) -> str:
    """``url`` with only allowed query parameters and route fragments; unparseable text becomes ``""``
    when it has a query or fragment (nothing in it can be trusted to be harmless)."""
    if "?" not in url and "#" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    return urlunsplit(
        (parts.scheme, parts.netloc, parts.path, clean_query(parts.query, keep), _clean_fragment(parts.fragment, keep))
    )


def clean_value(value: str) -> str:
    """A campaign value or any other kept text: itself, or :data:`REDACTED` when it looks secret."""
    return REDACTED if value and looks_secret(value) else value


def clean_props(props: Any) -> Any:
    """Custom properties with secret-named entries and e-mail values redacted, at every level."""
    if isinstance(props, dict):
        return {
            key: REDACTED if SECRET_NAME.search(key) and value not in (None, "") else clean_props(value)
            for key, value in props.items()
        }
    if isinstance(props, list):
        return [clean_props(item) for item in props]
    if isinstance(props, str) and "@" in props and _EMAIL.search(props):
        return REDACTED
    return props


def check_keep_params(names: Iterable[str]) -> tuple[str, ...]:
    """A project's own kept parameter names, validated: ``ValueError`` names the first bad one."""
    kept = tuple(dict.fromkeys(name.strip() for name in names))
    if len(kept) > MAX_KEEP_PARAMS:
        raise ValueError(f"at most {MAX_KEEP_PARAMS} query parameters can be kept, not {len(kept)}")
    for name in kept:
        if not PARAM_NAME.fullmatch(name):
            raise ValueError(f"{name[:80]!r} is not a query parameter name (letters, digits, _ . - [ ], 1-64)")
        if name.lower() in CLICK_IDS:
            raise ValueError(f"{name!r} is a click id: it is kept as a flag, never with its value")
    return kept
