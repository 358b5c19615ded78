"""Two clients of one TURN server relaying to each other (ICE relay-relay through one server).

The server refuses its own IP addresses as peers, so that nobody can relay into its listening or
metrics ports; another allocation's relayed address on the same IP is the exception, and data
under such a permission reaches relayed addresses only.
"""

from __future__ import annotations

from stun.address import Address

from .harness import OTHER_CLIENT, PASSWORDS, SERVER, Client, code, make_server, relayed


def two_allocations() -> tuple[Client, Client, Address, Address]:
    server, _ = make_server()
    alice = Client(server)
    bob = Client(server, address=OTHER_CLIENT, username="bob", password=PASSWORDS["bob"])
    (alice_relay,) = relayed(alice.allocate())
    (bob_relay,) = relayed(bob.allocate())
    assert alice_relay.host == bob_relay.host == SERVER.host
    return alice, bob, alice_relay, bob_relay


def test_a_permission_for_another_allocations_relayed_address_is_granted() -> None:
    alice, bob, alice_relay, bob_relay = two_allocations()
    assert code(alice.permit(bob_relay)) is None
    assert code(bob.permit(alice_relay)) is None


def test_data_goes_from_one_relayed_address_to_the_other() -> None:
    alice, _, alice_relay, bob_relay = two_allocations()
    alice.permit(bob_relay)
    out = alice.send_indication(bob_relay, b"to bob's relay", now=1.0)
    assert out is not None
    assert (out.data, out.local, out.remote) == (b"to bob's relay", alice_relay, bob_relay)


def test_our_own_address_is_still_refused_when_it_is_no_relayed_address() -> None:
    alice, _, _, _ = two_allocations()
    assert code(alice.permit(SERVER)) == 403  # the listening port


def test_a_permission_for_our_ip_reaches_no_other_port() -> None:
    alice, _, _, bob_relay = two_allocations()
    alice.permit(bob_relay)  # a permission for the server's IP, per RFC 8656 §9
    assert alice.send_indication(SERVER, b"into the listener", now=1.0) is None
    assert alice.send_indication(Address(SERVER.host, 50009), b"unused port", now=1.0) is None
