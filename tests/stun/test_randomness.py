"""stun.randomness: the core's one source of randomness."""

from __future__ import annotations

import random

from stun import randomness
from stun.randomness import default_random, new_transaction_id, uniform


def test_uniform_from_a_given_source_is_that_sources_random() -> None:
    ours, theirs = random.Random(7), random.Random(7)
    assert [uniform(ours) for _ in range(5)] == [theirs.random() for _ in range(5)]


def test_uniform_from_the_os_is_in_range_and_takes_one_id_of_the_batch() -> None:
    values = []
    for source in (None, default_random()):
        new_transaction_id()  # a batch is there
        waiting = len(randomness._SYSTEM_IDS)
        value = uniform(source)
        if waiting:  # (the draw above may have taken the batch's last ID)
            assert len(randomness._SYSTEM_IDS) == waiting - 1
        values.append(value)
    values += [uniform() for _ in range(200)]
    assert all(0.0 <= value < 1.0 for value in values)
    assert len(set(values)) == len(values)
