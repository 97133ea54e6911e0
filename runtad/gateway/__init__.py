"""The egress gateway: TLS SNI and HTTP Host checks for redirected TCP 80/443 connections.

clienthello and http1 parse the first flight, decision judges it against the sandbox's
policy, relay splices allowed connections through, and listener ties them together for
one sandbox.
"""

from .decision import DENY_REASONS, INSPECT_ALL, INSPECT_FIRST, GatewayPolicy
from .listener import GatewayDecision, GatewayListener, GatewayOptions, OnDecision

__all__ = [
    "DENY_REASONS",
    "INSPECT_ALL",
    "INSPECT_FIRST",
    "GatewayDecision",
    "GatewayListener",
    "GatewayOptions",
    "GatewayPolicy",
    "OnDecision",
]
