"""The strategies of tests/properties/signed.py do what they claim: every registered attribute type
has wire values, and those values decode as that type (ERROR-CODE's aside, which are sometimes
meant not to)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

import turn  # noqa: F401  (registers TURN's attributes)
from stun import AttrType, DecodeError, Message, MessageClass, Method
from stun.attributes import registered_attribute
from turn import TurnAttrType

from .signed import SECURITY_TYPES, WIRE_VALUES

#: Values that may be undecodable on purpose (a class outside 3-6, a number above 99).
MAY_NOT_DECODE = frozenset((AttrType.ERROR_CODE, TurnAttrType.ADDRESS_ERROR_CODE))


def test_every_registered_attribute_type_has_wire_values() -> None:
    registered = {code for code in range(0x10000) if registered_attribute(code) is not None}
    assert set(WIRE_VALUES) == registered - SECURITY_TYPES


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_wire_values_decode_as_their_type(data: st.DataObject) -> None:
    for code, values in WIRE_VALUES.items():
        attribute = data.draw(values, label=hex(code))
        encoded = Message(Method.BINDING, MessageClass.REQUEST, bytes(12), [attribute]).encode()
        try:
            (decoded,) = Message.decode(encoded).attributes
        except DecodeError:
            assert code in MAY_NOT_DECODE
            continue
        assert type(decoded) is registered_attribute(code)
