"""Two ICE agents back to back on a virtual clock (architecture.md §5 tier 1), and peer behaviours.

A tiny wire delivers each datagram to the machine that owns its destination address, after a
fixed one-way delay; everything else is dropped, and so is everything to or from a black-holed
address. No NATs here:
ice/netsim.py covers those. A machine is an :class:`~ice.agent.Agent`, or an agent wrapped in a
*peer behaviour*: the habit of some deployed agent, modelled on the wire (what it answers, what it
adds to what it sends), around our own agent.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ice.agent import Agent
from ice.candidate import Candidate, CandidateType
from ice.config import AgentConfig
from ice.events import IceEvent, IceState, StateChanged
from stun.address import Address
from stun.attributes import UseCandidate, XorMappedAddress
from stun.datagram import Datagram, Machine
from stun.message import Message, MessageClass

A_ADDRESS = Address("192.0.2.1", 5000)
B_ADDRESS = Address("192.0.2.2", 6000)
DELAY = 0.010


@dataclass
class Wire:
    """Delivers datagrams between agents by destination address, with a one-way delay."""

    agents: dict[Address, Machine]
    now: float = 0.0
    in_flight: list[tuple[float, int, Datagram]] = field(default_factory=list)
    sent: list[Datagram] = field(default_factory=list)
    blackholed: set[Address] = field(default_factory=set)
    events: dict[int, list[IceEvent]] = field(default_factory=dict)
    _sequence: int = 0

    def collect(self) -> None:
        for agent in set(self.agents.values()):
            for datagram in agent.datagrams_to_send(self.now):
                self.sent.append(datagram)
                self._sequence += 1
                self.in_flight.append((self.now + DELAY, self._sequence, datagram))
            log = self.events.setdefault(id(agent), [])
            while (event := agent.next_event()) is not None:
                assert isinstance(event, IceEvent)
                log.append(event)

    def step(self, until: float = float("inf")) -> bool:
        """Advance to the next delivery or timer; ``False`` when nothing is left before
        ``until`` (the clock then stops at ``until``)."""
        self.collect()
        timers = [
            (t, agent)
            for agent in set(self.agents.values())
            if (t := agent.get_timer()) is not None
        ]
        next_delivery = min(self.in_flight, default=None)
        next_timer = min(timers, key=lambda item: item[0], default=None)
        due = min(
            [item[0] for item in (next_delivery, next_timer) if item is not None], default=None
        )
        if due is None or due > until:
            self.now = max(self.now, until) if due is not None else self.now
            return False
        if next_delivery is not None and (next_timer is None or next_delivery[0] <= next_timer[0]):
            self.in_flight.remove(next_delivery)
            self.now = max(self.now, next_delivery[0])
            datagram = next_delivery[2]
            target = self.agents.get(datagram.remote)
            cut_off = {datagram.local, datagram.remote} & self.blackholed
            if target is not None and not cut_off:
                assert datagram.local is not None
                target.receive_datagram(datagram.data, datagram.remote, datagram.local, self.now)
        else:
            assert next_timer is not None
            self.now = max(self.now, next_timer[0])
            next_timer[1].handle_timer(self.now)
        self.collect()
        return True

    def run(self, until: float) -> None:
        """Deliver and fire everything due up to ``until``; the clock ends there (or earlier,
        when nothing is left to happen)."""
        for _ in range(200_000):
            if not self.step(until):
                return
        raise AssertionError("wire did not settle")

    def log(self, agent: Machine) -> list[IceEvent]:
        return self.events.get(id(agent), [])


def make_agent(controlling: bool, address: Address, seed: int, **options: object) -> Agent:
    config = AgentConfig(controlling=controlling, rng=random.Random(seed), **options)  # type: ignore[arg-type]
    agent = Agent(config)
    agent.add_base(0, 1, address)
    agent.gather(0.0)
    return agent


def host_candidates(agent: Agent) -> list[Candidate]:
    return [c.candidate for c in agent.local_candidates if c.candidate.type is CandidateType.HOST]


def connect(
    a: Agent, b: Agent, wire: Wire, *, signal_b_to_a: bool = True, until: float = 10.0
) -> None:
    a.set_remote_credentials(b.local_username, b.local_password)
    b.set_remote_credentials(a.local_username, a.local_password)
    for candidate in host_candidates(a):
        b.add_remote_candidate(candidate)
    if signal_b_to_a:
        for candidate in host_candidates(b):
            a.add_remote_candidate(candidate)
    a.add_remote_candidate(None)
    b.add_remote_candidate(None)
    a.start_checks(wire.now)
    b.start_checks(wire.now)
    wire.run(until)


def pair_of(**options: object) -> tuple[Agent, Agent, Wire]:
    a = make_agent(True, A_ADDRESS, 1, **options)
    b = make_agent(False, B_ADDRESS, 2, **options)
    return a, b, Wire({A_ADDRESS: a, B_ADDRESS: b})


def states(wire: Wire, agent: Agent) -> list[IceState]:
    return [e.state for e in wire.log(agent) if isinstance(e, StateChanged)]


def is_request(datagram: Datagram) -> bool:
    data = datagram.data
    return data[0] < 4 and Message.decode(data).message_class is MessageClass.REQUEST


def nominating(datagram: Datagram) -> bool:
    """Whether the datagram is a check carrying USE-CANDIDATE."""
    return is_request(datagram) and Message.decode(datagram.data).has(UseCandidate)


class Behaviour:
    """A peer behaviour around an agent: passes everything through unless a subclass says."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def receive_datagram(
        self, data: bytes, local: Address | None, remote: Address, now: float
    ) -> None:
        self.agent.receive_datagram(data, local, remote, now)

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        return self.agent.datagrams_to_send(now)

    def get_timer(self) -> float | None:
        return self.agent.get_timer()

    def handle_timer(self, now: float) -> None:
        self.agent.handle_timer(now)

    def next_event(self) -> IceEvent | None:
        return self.agent.next_event()


class ForgetsEarlyChecks(Behaviour):
    """Answers a check that arrives before it has our credentials with a 200 — its own password
    suffices to sign that — and then forgets it: no triggered check once the credentials come,
    no nominated flag for a USE-CANDIDATE in it (against RFC 8445 §7.3.1.5)."""

    def __init__(self, agent: Agent) -> None:
        super().__init__(agent)
        self._answers: list[Datagram] = []
        #: USE-CANDIDATE checks answered and forgotten.
        self.forgotten_nominations = 0

    def receive_datagram(
        self, data: bytes, local: Address | None, remote: Address, now: float
    ) -> None:
        key = self.agent.local_password.encode()
        if self.agent.remote_password is None and local is not None and data[0] < 4:
            request = Message.decode(data)
            if request.message_class is MessageClass.REQUEST and request.check_integrity(key):
                answer = request.success_response([XorMappedAddress(remote)])
                data = answer.encode(key=key, fingerprint=True)
                self._answers.append(Datagram(data, local, remote))
                self.forgotten_nominations += request.has(UseCandidate)
                return
        self.agent.receive_datagram(data, local, remote, now)

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        answers, self._answers = self._answers, []
        return answers + self.agent.datagrams_to_send(now)


class NominatesAggressively(Behaviour):
    """A controlling peer that puts USE-CANDIDATE on every check it sends (RFC 5245 §8.1.1.2's
    aggressive nomination), while its agent keeps the first pair it nominated."""

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        password = self.agent.remote_password
        out = []
        for datagram in self.agent.datagrams_to_send(now):
            if password is not None and is_request(datagram) and not nominating(datagram):
                check = Message.decode(datagram.data)
                attributes = [*check.content_attributes, UseCandidate()]
                check = Message(check.method, check.message_class, check.transaction_id, attributes)
                data = check.encode(key=password.encode(), fingerprint=True)
                datagram = Datagram(data, datagram.local, datagram.remote)
            out.append(datagram)
        return out
