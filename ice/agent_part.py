"""The parts of an :class:`~ice.agent.Agent` that its check helpers read at every datagram.

The agent hands its work to helpers (outgoing checks, selection; :mod:`ice.agent`'s module
docstring); each keeps direct references to the agent's configuration, gatherer, consent tracker
and failure counters instead of reaching through the agent every time. :class:`AgentPart` is
those references, in slots, shared by the outgoing and incoming checks and the selection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .events import IceEvent

if TYPE_CHECKING:
    from .agent import Agent


class AgentPart:
    """A helper of one agent, with the agent's parts it reads often and the agent's ``emit``."""

    __slots__ = ("_agent", "_config", "_consent", "_emit", "_failures", "_gatherer")

    def __init__(self, agent: Agent, emit: Callable[[IceEvent], None]) -> None:
        self._agent = agent
        self._config = agent.config
        self._gatherer = agent.gatherer
        self._consent = agent.consent
        self._failures = agent.failures
        self._emit = emit
