"""Training speed and time left: a long pause is no slow step."""

from __future__ import annotations

import pytest

from napari_action.training.rate_clock import RateClock


def test_a_long_pause_leaves_the_rate_and_the_time_left_alone():
    clock = RateClock(total=100, now=0.0)
    for second in range(1, 11):  # one step a second
        clock.tick(now=float(second))
    assert clock.rate == pytest.approx(1.0)
    clock.tick(now=10.0 + 3600.0)  # the laptop slept for an hour during step 11
    assert clock.rate == pytest.approx(1.0) and clock.eta == pytest.approx(89.0)
    clock.tick(now=3612.0)  # training slowed down to 2 s a step: that does count
    assert clock.rate == pytest.approx(0.95)
