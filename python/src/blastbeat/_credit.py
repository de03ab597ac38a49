"""Credit: per-session flow control toward one gateway connection (docs/PROTOCOL.md, "Credit").

A node announces that it takes credit with the body of its unsolicited ``pong`` (``credit``); a gateway that
grants credit acknowledges with a ``credit`` message with an empty sid. From then on the node sends a
session's response bytes (``headers``, ``body``, ``chunk``, ``websocket``, ``websocket-binary``) only while the
gateway has granted credit for that sid: messages beyond it wait here, per sid, so a session whose client
reads slowly holds back only its own messages. ``body`` and ``chunk`` messages are split to fit the credit;
``headers`` and WebSocket messages go whole once there is any credit (the credit then goes below zero). A
gateway that never acknowledges (an older one) grants nothing and expects nothing: messages pass at once.

Owned by the node's I/O thread; the node does the byte accounting of what waits here (each item carries the
``Request`` it belongs to).
"""

from __future__ import annotations

import collections
from typing import Any, Deque, Dict, List, Tuple

#: Body of the ``pong`` that announces credit.
ANNOUNCEMENT = b"credit"
#: Message types whose body frame uses credit; ``end`` and ``retry`` are free.
COUNTED = frozenset((b"headers", b"body", b"chunk", b"websocket", b"websocket-binary"))
#: Types that may be split to fit the credit left.
SPLITTABLE = frozenset((b"body", b"chunk"))

#: One outbound message: its frames [sid, type, body], the bytes it counts in the node's buffer, its owner.
Item = Tuple[List[bytes], int, Any]


class CreditGate:
    """The credit state of one gateway connection: whether it grants credit, and per sid the credit left and
    the messages waiting for more."""

    def __init__(self) -> None:
        self.granting = False
        self.credit: Dict[bytes, int] = {}
        self.held: Dict[bytes, Deque[Item]] = {}

    def acknowledged(self) -> None:
        """The gateway answered the announcement: every sid now starts without credit."""
        self.granting = True

    def reset(self) -> List[Item]:
        """The connection is gone (a new one announces again): returns the messages that waited, dropped."""
        self.granting = False
        dropped = [item for held in self.held.values() for item in held]
        self.credit.clear()
        self.held.clear()
        return dropped

    def new_request(self, sid: bytes) -> None:
        """A ``uwsgi`` arrived: the sid's credit starts over at zero (its grant follows). A request that arrived
        before the acknowledgement was sent by the gateway without credit, and is answered without."""
        if self.granting:
            self.credit[sid] = 0
        else:
            self.credit.pop(sid, None)

    def grant(self, sid: bytes, amount: int) -> List[Item]:
        """A ``credit`` for ``sid``: returns the messages that may go out now, in order."""
        self.credit[sid] = self.credit.get(sid, 0) + amount
        return self._release(sid)

    def offer(self, item: Item) -> List[Item]:
        """A message the node wants to send: returns what may go out now (it, a first part of it, or nothing
        while earlier messages of its sid wait)."""
        sid = item[0][0]
        if sid not in self.credit and sid not in self.held:
            return [item]  # a request from before the acknowledgement
        self.held.setdefault(sid, collections.deque()).append(item)
        return self._release(sid)

    def ended(self, sid: bytes) -> List[Item]:
        """``end`` for ``sid``: returns its waiting messages, dropped (the gateway would drop them too)."""
        self.credit.pop(sid, None)
        return list(self.held.pop(sid, ()))

    def done(self, sid: bytes) -> None:
        """The node finished with the request: forget its credit unless messages still wait for it."""
        if sid not in self.held:
            self.credit.pop(sid, None)

    def waiting(self, sid: bytes) -> int:
        return sum(item[1] for item in self.held.get(sid, ()))

    def _release(self, sid: bytes) -> List[Item]:
        held = self.held.get(sid)
        out: List[Item] = []
        while held:
            frames, n, owner = held[0]
            kind = frames[1]
            if kind in COUNTED:
                credit = self.credit.get(sid, 0)
                if credit <= 0:
                    break
                size = len(frames[2])
                if kind in SPLITTABLE and size > credit:
                    rest = frames[2][credit:]
                    out.append(([sid, kind, frames[2][:credit]], n - len(rest), owner))
                    held[0] = ([sid, kind, rest], len(rest), owner)
                    self.credit[sid] = 0
                    break
                self.credit[sid] = credit - size
            held.popleft()
            out.append((frames, n, owner))
        if not held:
            self.held.pop(sid, None)
        return out
