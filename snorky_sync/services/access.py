"""Personal channels: who may read a channel, from its name (protocol.md).

Centrifugo's convention: a channel whose name is a string containing ``#``
is *personal*; the text after its last ``#`` is a comma-separated list of
the identities that may read it (``dialog#alice,bob``: alice and bob;
``inbox#42``: the connection whose identity is ``"42"`` or ``42``).  Anyone
else, and an anonymous connection, is refused.  An empty list
(``"nobody#"``) lets nobody in.  PubSub and Chat apply it when created with
``personal_channels=True`` (``SNORKY_PERSONAL_CHANNELS``; on in the default
app); channels that are not strings, or have no ``#``, are not personal.
"""
from __future__ import annotations

from typing import Any

__all__ = ["personal_identities", "identity_text", "personal_allows"]


def personal_identities(channel: Any) -> list[str] | None:
    """The identities listed after the last ``#`` of ``channel``, or None
    when it is not a personal channel."""
    if not isinstance(channel, str) or "#" not in channel:
        return None
    listed = channel.rpartition("#")[2]
    return [name for name in listed.split(",") if name]


def identity_text(identity: Any) -> str | None:
    """An identity as the text a personal channel lists: a string as it is,
    an integer in decimal; None (never listed) for anonymous and for any
    other kind of identity."""
    if isinstance(identity, str):
        return identity
    if isinstance(identity, int) and not isinstance(identity, bool):
        return str(identity)
    return None


def personal_allows(channel: Any, identity: Any) -> bool:
    """May a connection of ``identity`` read (and publish to) ``channel``?
    True for every channel that is not personal."""
    listed = personal_identities(channel)
    if listed is None:
        return True
    text = identity_text(identity)
    return text is not None and text in listed
