"""NAT behaviour discovery, the client's side (RFC 5780 §4), sans-IO.

Theory of operation. :class:`NatDiscovery` runs one test at a time, each a Binding request under
its own :class:`~stun.transaction.ClientTransaction` with a short schedule
(:attr:`DiscoveryConfig.transaction`): a test that gets no answer is a result, not a failure.
Answers are matched by transaction ID alone, whatever address they come from and whichever of
our sockets they reach: answering from elsewhere is the point of CHANGE-REQUEST. The order:

1. **Test I** (§4.3): a plain request to the server. Its answer gives the mapped address,
   OTHER-ADDRESS and RESPONSE-ORIGIN. No answer ends the run (UDP blocked, or no server). A
   mapped address equal to our local one means there is no NAT. Without OTHER-ADDRESS (a server
   that does not do RFC 5780), mapping and filtering are undetermined and say so.
2. **Filtering** (§4.4), before anything is sent to the alternate address, which would open the
   NAT's filter for it: test II asks for an answer from the other IP and port (CHANGE-REQUEST
   both); if it comes, filtering is endpoint-independent. Else test III asks for the other port
   only: if that comes, address-dependent, else address-and-port-dependent. An answer that comes
   from the address asked rather than the one requested shows a server that ignores
   CHANGE-REQUEST, and a 420 one that refuses it: both leave filtering undetermined.
3. **Mapping** (§4.3): test II goes to the alternate IP and the primary port; the same mapped
   address as test I means endpoint-independent mapping. Else test III goes to the alternate IP
   and port: the same mapped address as test II means address-dependent, else
   address-and-port-dependent.
4. **Hairpinning** (§4.5): a request from our socket to our own mapped address. If it comes
   back to us through the NAT, the NAT hairpins.
5. **Binding lifetime** (§4.6), when asked: refresh the mapping of the first socket with a
   request, wait T, then from the second socket ask the server to answer to the first mapping's
   port (RESPONSE-PORT). An answer means the mapping outlived T. T=0 first (does the server
   honour RESPONSE-PORT at all?), then ``lifetime_max``, then a binary search until the bracket
   is ``lifetime_resolution`` wide. Each wait shows as progress.

Over TCP (``reliable``) only the mapping tests run, each request on its own connection from the
same local port: the driver opens a connection per destination; filtering, hairpinning and the
lifetime test are UDP notions here (CHANGE-REQUEST is for UDP, §7.2).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .address import Address
from .attributes import (
    Attribute,
    ChangeRequest,
    ErrorCode,
    MappedAddress,
    OtherAddress,
    ResponseOrigin,
    ResponsePort,
    Software,
    XorMappedAddress,
)
from .datagram import Datagram
from .discovery_results import (
    Behavior,
    DiscoveryConfig,
    DiscoveryFinished,
    DiscoveryProgressed,
    DiscoveryResult,
    Finding,
    Lifetime,
    undetermined,
)
from .errors import DecodeError, LocalProtocolError
from .events import StunEvent
from .message import Message, MessageClass, Method, new_transaction_id
from .randomness import RandomSource, default_random
from .transaction import ClientTransaction, TransactionState

#: What a test does with an answer (the response, where it came from) or with none.
_Answered = Callable[[Message, Address, float], None]
_TimedOut = Callable[[float], None]


@dataclass(slots=True)
class _Test:
    name: str
    transaction: ClientTransaction
    local: Address | None
    remote: Address
    answered: _Answered
    timed_out: _TimedOut
    #: The hairpinning test waits for its own request, not for a response.
    own_request: bool = False


def _mapped(response: Message) -> Address | None:
    found = response.get(XorMappedAddress) or response.get(MappedAddress)
    return found.address if found is not None else None


def _error_text(response: Message) -> str:
    error = response.get(ErrorCode)
    return f"{error.code} {error.reason}".strip() if error is not None else "an error"


class NatDiscovery:
    """The RFC 5780 discovery of the NAT between ``local`` and ``server``, sans-IO
    (architecture.md §2). ``local`` is the address of the socket the tests go from (``None`` if
    unknown: then "no NAT" cannot be told); ``second`` a second socket for the lifetime test.

    Call :meth:`start`, drive the five verbs until :class:`DiscoveryFinished` comes out of
    :meth:`next_event` (also :attr:`result`); every wait is bounded by the configuration.
    """

    def __init__(
        self,
        server: Address,
        *,
        local: Address | None = None,
        second: Address | None = None,
        config: DiscoveryConfig | None = None,
        rng: RandomSource | None = None,
    ) -> None:
        self.config = config = config or DiscoveryConfig()
        if config.lifetime and (second is None or config.reliable):
            raise LocalProtocolError("the lifetime test needs a second UDP socket (second=...)")
        self.server = server
        self.local = local
        self.second = second
        self._rng = rng if rng is not None else default_random()
        self._schedule = config.transaction
        self._test: _Test | None = None
        self._wait: tuple[float, _TimedOut] | None = None
        self._outgoing: list[Datagram] = []
        self._events: deque[StunEvent] = deque()
        self._started = False
        #: Datagrams that matched no test, by reason.
        self.dropped: dict[str, int] = {}
        self.result: DiscoveryResult | None = None
        # what the tests found so far
        self._mapped: Address | None = None
        self._other: Address | None = None
        self._origin: Address | None = None
        self._software: str | None = None
        self._nat: bool | None = None
        self._mapping: Finding[Behavior] | None = None
        self._filtering: Finding[Behavior] | None = None
        self._hairpinning: Finding[bool] | None = None
        self._lifetime: Finding[Lifetime] | None = None
        self._evidence: list[str] = []
        self._test2_mapped: Address | None = None
        self._bracket = (0.0, config.lifetime_max)
        self._lifetime_evidence: list[str] = []

    # ------------------------------------------------------------------ commands

    def start(self, now: float) -> None:
        """Send test I."""
        if self._started:
            raise LocalProtocolError("the discovery was started already")
        self._started = True
        self._send("test I", self.server, (), now, self._test1, self._test1_silent)

    # ------------------------------------------------------------------ sans-IO verbs

    def receive_datagram(
        self, data: bytes, local: Address | None, remote: Address, now: float
    ) -> None:
        """Feed a datagram that reached any of our sockets; what matches no test is dropped."""
        test = self._test
        try:
            message = Message.decode(data)
        except DecodeError:
            self._drop("malformed")
            return
        if test is None or message.transaction_id != test.transaction.transaction_id:
            self._drop("no such test")
            return
        if test.own_request != (message.message_class is MessageClass.REQUEST) or (
            message.message_class is MessageClass.INDICATION
        ):
            self._drop("not an answer")
            return
        test.transaction.answered(now)
        self._test = None
        test.answered(message, remote, now)

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        """Drain the requests to send now."""
        outgoing, self._outgoing = self._outgoing, []
        return outgoing

    def get_timer(self) -> float | None:
        """The next retransmission, the end of a test, or the end of a lifetime wait."""
        if self._test is not None:
            return self._test.transaction.get_timer()
        return self._wait[0] if self._wait is not None else None

    def handle_timer(self, now: float) -> None:
        """Retransmit, give a test up, or end a wait."""
        test = self._test
        if test is not None:
            resend = test.transaction.handle_timer(now)
            if resend is not None:
                self._outgoing.append(Datagram(resend, test.local, test.remote))
            elif test.transaction.state is TransactionState.TIMED_OUT:
                self._test = None
                test.timed_out(now)
        elif self._wait is not None and now >= self._wait[0]:
            then = self._wait[1]
            self._wait = None
            then(now)

    def next_event(self) -> StunEvent | None:
        """The next progress line, or the end of the discovery."""
        return self._events.popleft() if self._events else None

    # ------------------------------------------------------------------ plumbing

    def _drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def _say(self, message: str) -> None:
        self._events.append(DiscoveryProgressed(message))

    def _send(
        self,
        name: str,
        remote: Address,
        attributes: tuple[Attribute, ...],
        now: float,
        answered: _Answered,
        timed_out: _TimedOut,
        *,
        local: Address | None = None,
        own_request: bool = False,
    ) -> None:
        transaction_id = new_transaction_id(self._rng)
        software = self.config.software
        extra = (Software(software),) if software is not None else ()
        data = Message(
            Method.BINDING, MessageClass.REQUEST, transaction_id, [*attributes, *extra]
        ).encode(fingerprint=True)
        transaction = ClientTransaction(
            data,
            transaction_id,
            now=now,
            rto=self._schedule.initial_rto,
            reliable=self.config.reliable,
            config=self._schedule,
        )
        source = local if local is not None else self.local
        self._test = _Test(name, transaction, source, remote, answered, timed_out, own_request)
        self._outgoing.append(Datagram(data, source, remote))
        self._say(f"{name}: Binding request to {remote}")

    def _silence(self) -> str:
        return (
            f"no answer in {self.config.test_timeout:g} s"
            if self.config.reliable
            else f"no answer to {self._schedule.max_requests} requests in "
            f"{self.config.test_timeout:g} s"
        )

    # ------------------------------------------------------------------ test I

    def _test1(self, response: Message, remote: Address, now: float) -> None:
        if response.message_class is MessageClass.ERROR_RESPONSE:
            self._finish_early(f"the server answered test I with {_error_text(response)}", now)
            return
        mapped = _mapped(response)
        if mapped is None:
            self._finish_early("the server's answer to test I has no mapped address", now)
            return
        other = response.get(OtherAddress)
        origin = response.get(ResponseOrigin)
        software = response.get(Software)
        self._mapped = mapped
        self._other = other.address if other is not None else None
        self._origin = origin.address if origin is not None else None
        self._software = software.value if software is not None else None
        if self.local is not None:
            self._nat = mapped != self.local
        line = f"test I: to {self.server}, mapped address {mapped}"
        line += f", OTHER-ADDRESS {self._other}" if self._other else ", no OTHER-ADDRESS"
        self._evidence.append(line)
        reason = self._no_alternate_reason()
        if reason is not None:
            self._mapping = undetermined(reason, (line,))
            self._filtering = undetermined(reason, (line,))
            self._hairpin(now)
        elif self.config.reliable:
            self._filtering = undetermined(
                "filtering is tested over UDP: CHANGE-REQUEST has no meaning over TCP "
                "(RFC 5780 §7.2)"
            )
            self._mapping_test2(now)
        else:
            self._filter_test2(now)

    def _no_alternate_reason(self) -> str | None:
        # §7.4: OTHER-ADDRESS is the other IP *and* the other port of the address a request
        # reached. coturn departs from it for requests that reach its alternate IP (it names that
        # same IP with the other port); we follow the RFC, so such a server address is refused
        # here with the reason, and the tests only ever use test I's OTHER-ADDRESS.
        other = self._other
        if other is None:
            return (
                "the server sent no OTHER-ADDRESS: it does not do RFC 5780 behaviour discovery "
                "(try a server that does, such as icestack serve stun --rfc5780)"
            )
        if other.host == self.server.host or other.port == self.server.port:
            return (
                f"the server's OTHER-ADDRESS {other} does not differ from {self.server} in both "
                "IP and port, as the tests need (RFC 5780 §7.4)"
            )
        return None

    def _test1_silent(self, now: float) -> None:
        transport = "TCP" if self.config.reliable else "UDP"
        self._finish_early(
            f"{self._silence()} from {self.server} in test I: {transport} to it is blocked, or "
            "no STUN server listens there",
            now,
        )

    def _finish_early(self, reason: str, now: float) -> None:
        evidence = tuple(self._evidence)
        self._mapping = self._filtering = undetermined(reason, evidence)
        self._hairpinning = undetermined(reason, evidence)
        if self.config.lifetime:
            self._lifetime = undetermined(reason, evidence)
        self._finish()

    # ------------------------------------------------------------------ filtering (§4.4)

    def _filter_test2(self, now: float) -> None:
        self._send(
            "filtering test II",
            self.server,
            (ChangeRequest(change_ip=True, change_port=True),),
            now,
            self._filter_test2_answered,
            self._filter_test2_silent,
        )

    def _refused_change(
        self, test: str, response: Message, remote: Address, want: Address
    ) -> str | None:
        """Why an answer to a CHANGE-REQUEST test says nothing about filtering, if it does not."""
        if response.message_class is MessageClass.ERROR_RESPONSE:
            return f"the server refused CHANGE-REQUEST in {test} ({_error_text(response)})"
        if remote != want:
            return (
                f"the answer to {test} came from {remote}, not {want}: the server ignores "
                "CHANGE-REQUEST"
            )
        return None

    def _filter_test2_answered(self, response: Message, remote: Address, now: float) -> None:
        assert self._other is not None
        line = f"filtering test II: asked for an answer from {self._other}, it came from {remote}"
        problem = self._refused_change("filtering test II", response, remote, self._other)
        if problem is not None:
            self._filtering = undetermined(problem, (line,))
        else:
            self._filtering = Finding(Behavior.ENDPOINT_INDEPENDENT, None, (line,))
        self._mapping_test2(now)

    def _filter_test2_silent(self, now: float) -> None:
        self._evidence.append(
            f"filtering test II: asked for an answer from {self._other}: {self._silence()}"
        )
        self._send(
            "filtering test III",
            self.server,
            (ChangeRequest(change_ip=False, change_port=True),),
            now,
            self._filter_test3_answered,
            self._filter_test3_silent,
        )

    def _filter_test3_answered(self, response: Message, remote: Address, now: float) -> None:
        assert self._other is not None
        want = Address(self.server.host, self._other.port)
        lines = (
            self._evidence[-1],
            f"filtering test III: asked for an answer from {want}, it came from {remote}",
        )
        problem = self._refused_change("filtering test III", response, remote, want)
        if problem is not None:
            self._filtering = undetermined(problem, lines)
        else:
            self._filtering = Finding(Behavior.ADDRESS_DEPENDENT, None, lines)
        self._mapping_test2(now)

    def _filter_test3_silent(self, now: float) -> None:
        assert self._other is not None
        want = Address(self.server.host, self._other.port)
        lines = (self._evidence[-1], f"filtering test III: asked for an answer from {want}: "
                 f"{self._silence()}")  # fmt: skip
        self._filtering = Finding(Behavior.ADDRESS_AND_PORT_DEPENDENT, None, lines)
        self._mapping_test2(now)

    # ------------------------------------------------------------------ mapping (§4.3)

    def _mapping_test2(self, now: float) -> None:
        assert self._other is not None
        if self._nat is False:
            line = f"test I: the mapped address {self._mapped} is our own: no NAT"
            self._mapping = Finding(Behavior.ENDPOINT_INDEPENDENT, None, (self._evidence[0], line))
            self._hairpin(now)
            return
        self._send(
            "mapping test II",
            Address(self._other.host, self.server.port),
            (),
            now,
            self._mapping_test2_answered,
            self._mapping_silent,
        )

    def _mapping_test2_answered(self, response: Message, remote: Address, now: float) -> None:
        mapped = _mapped(response)
        line = f"mapping test II: to {remote}, mapped address {mapped}"
        lines = (self._evidence[0], line)
        if mapped is None:
            self._mapping = undetermined(
                "no mapped address in the answer to mapping test II", lines
            )
            self._hairpin(now)
        elif mapped == self._mapped:
            self._mapping = Finding(Behavior.ENDPOINT_INDEPENDENT, None, lines)
            self._hairpin(now)
        else:
            self._test2_mapped = mapped
            self._evidence.append(line)
            assert self._other is not None
            self._send(
                "mapping test III",
                self._other,
                (),
                now,
                self._mapping_test3_answered,
                self._mapping_silent,
            )

    def _mapping_test3_answered(self, response: Message, remote: Address, now: float) -> None:
        mapped = _mapped(response)
        lines = (self._evidence[0], self._evidence[-1],
                 f"mapping test III: to {remote}, mapped address {mapped}")  # fmt: skip
        if mapped is None:
            self._mapping = undetermined(
                "no mapped address in the answer to mapping test III", lines
            )
        elif mapped == self._test2_mapped:
            self._mapping = Finding(Behavior.ADDRESS_DEPENDENT, None, lines)
        else:
            self._mapping = Finding(Behavior.ADDRESS_AND_PORT_DEPENDENT, None, lines)
        self._hairpin(now)

    def _mapping_silent(self, now: float) -> None:
        assert self._test is None
        self._mapping = undetermined(
            f"{self._silence()} from the server's alternate address (mapping test II or III): "
            "it does not answer there, or something on the path drops it",
            tuple(self._evidence),
        )
        self._hairpin(now)

    # ------------------------------------------------------------------ hairpinning (§4.5)

    def _hairpin(self, now: float) -> None:
        mapped = self._mapped
        if self.config.reliable or not self.config.hairpinning:
            self._hairpinning = undetermined(
                "hairpinning is tested over UDP only" if self.config.reliable else "not asked for"
            )
            self._lifetime_start(now)
            return
        assert mapped is not None
        if self._nat is False:
            self._hairpinning = undetermined("there is no NAT between us and the server")
            self._lifetime_start(now)
            return
        self._send(
            "hairpinning test",
            mapped,
            (),
            now,
            self._hairpinned,
            self._not_hairpinned,
            own_request=True,
        )

    def _hairpinned(self, request: Message, remote: Address, now: float) -> None:
        line = f"hairpinning: our request to {self._mapped} came back to us from {remote}"
        self._hairpinning = Finding(True, None, (line,))
        self._lifetime_start(now)

    def _not_hairpinned(self, now: float) -> None:
        line = f"hairpinning: our request to {self._mapped} did not come back: {self._silence()}"
        self._hairpinning = Finding(False, None, (line,))
        self._lifetime_start(now)

    # ------------------------------------------------------------------ binding lifetime (§4.6)

    def _lifetime_start(self, now: float) -> None:
        if not self.config.lifetime:
            self._finish()
            return
        if self._nat is False:
            self._lifetime_over("there is no NAT between us and the server: no mapping to time")
            return
        self._lifetime_probe(0.0, now)

    def _lifetime_probe(self, wait: float, now: float) -> None:
        """Refresh the first socket's mapping, wait ``wait`` seconds, then ask from the second
        socket for an answer to that mapping's port."""

        def refreshed(response: Message, remote: Address, now: float) -> None:
            mapped = _mapped(response)
            if mapped is None or response.message_class is MessageClass.ERROR_RESPONSE:
                self._lifetime_over("the server did not answer a refresh with a mapped address")
                return
            if wait:
                self._say(f"binding lifetime: waiting {wait:g} s before asking for an answer")
            self._wait = (now + wait, lambda now: self._lifetime_ask(wait, mapped, now))

        self._send(
            "binding lifetime refresh", self.server, (), now, refreshed, self._refresh_silent
        )

    def _refresh_silent(self, now: float) -> None:
        self._lifetime_over(f"{self._silence()} to a refresh of the mapping")

    def _lifetime_ask(self, wait: float, mapped: Address, now: float) -> None:
        def alive(response: Message, remote: Address, now: float) -> None:
            if response.message_class is MessageClass.ERROR_RESPONSE:
                self._lifetime_over(f"the server refused RESPONSE-PORT ({_error_text(response)})")
                return
            self._lifetime_evidence.append(f"binding lifetime: alive after {wait:g} s")
            if wait:
                self._say(f"binding lifetime: the mapping was alive after {wait:g} s")
            self._lifetime_next(wait, True, now)

        def gone(now: float) -> None:
            if wait == 0:
                self._lifetime_over(
                    "no answer to RESPONSE-PORT right after the mapping was refreshed: the "
                    "server ignores RESPONSE-PORT, or the NAT filters the answer"
                )
                return
            self._lifetime_evidence.append(f"binding lifetime: gone after {wait:g} s")
            self._say(f"binding lifetime: the mapping was gone after {wait:g} s")
            self._lifetime_next(wait, False, now)

        self._send(
            "binding lifetime probe",
            self.server,
            (ResponsePort(mapped.port),),
            now,
            alive,
            gone,
            local=self.second,
        )

    def _lifetime_next(self, wait: float, alive: bool, now: float) -> None:
        low, high = self._bracket
        if wait == 0:
            self._lifetime_probe(high, now)
            return
        if alive:
            low = wait
            if wait >= self.config.lifetime_max:
                self._lifetime_done(Lifetime(wait, None))
                return
        else:
            high = wait
        self._bracket = (low, high)
        if high - low <= self.config.lifetime_resolution:
            self._lifetime_done(Lifetime(low, high))
            return
        self._lifetime_probe(round((low + high) / 2, 3), now)

    def _lifetime_done(self, lifetime: Lifetime) -> None:
        self._lifetime = Finding(lifetime, None, tuple(self._lifetime_evidence))
        self._finish()

    def _lifetime_over(self, reason: str) -> None:
        self._lifetime = undetermined(reason, tuple(self._lifetime_evidence))
        self._finish()

    # ------------------------------------------------------------------ the end

    def _finish(self) -> None:
        no_test: Finding[Behavior] = undetermined("not run")
        result = DiscoveryResult(
            server=self.server,
            transport="tcp" if self.config.reliable else "udp",
            local=self.local,
            mapped_address=self._mapped,
            other_address=self._other,
            response_origin=self._origin,
            software=self._software,
            nat=self._nat,
            mapping=self._mapping or no_test,
            filtering=self._filtering or no_test,
            hairpinning=self._hairpinning or undetermined("not run"),
            lifetime=self._lifetime,
        )
        self.result = result
        self._events.append(DiscoveryFinished(result))
