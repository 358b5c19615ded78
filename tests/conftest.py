"""What every test of the suite shares: hypothesis's settings.

Hypothesis times each example (``deadline``, 200 ms by default) and fails a test whose data
generation is slow (the ``too_slow`` health check). Both are timing thresholds, which this suite
does not assert (a loaded machine, or two pytest workers on two cores, would fail them): the
profile below turns them off for every property test; a test's own ``@settings`` still sets its
example count.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile("icestack", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("icestack")
