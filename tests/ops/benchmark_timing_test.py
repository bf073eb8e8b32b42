"""tfdisc.benchmarks.timing: what compare() measures under (not how fast)."""
import gc

from tfdisc.benchmarks import timing


def test_compare_times_with_the_collector_off_and_restores_it():
    seen = []

    def candidate():
        seen.append(gc.isenabled())

    assert gc.isenabled()
    times = timing.compare({"a": candidate, "b": candidate}, rounds=3, min_round_s=1e-4)
    assert set(times) == {"a", "b"} and all(t > 0 for t in times.values())
    # The warm-up call runs with the collector as it was; every timed call without it.
    assert seen[0] and seen[1] and not any(seen[2:])
    assert gc.isenabled()


def test_compare_leaves_a_disabled_collector_disabled():
    gc.disable()
    try:
        timing.compare({"a": lambda: None}, rounds=1, min_round_s=1e-4)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_collector_restored_when_a_candidate_raises():
    def broken():
        if not gc.isenabled():
            raise RuntimeError("boom")

    try:
        timing.compare({"a": broken}, rounds=1, min_round_s=1e-4)
    except RuntimeError:
        pass
    else:
        raise AssertionError("the candidate's error was swallowed")
    assert gc.isenabled()
