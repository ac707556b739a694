"""FeedStats back-pressure: a feeder never has more than ``max_live`` batches alive,
whatever the consumer does, and a consumer that never lets go cannot deadlock it."""
import threading
import time

import numpy as np

from mlsp.training.data import FeedStats


def _make(stats):
    stats.acquire()
    x = np.zeros((4, 3), np.float32)
    stats.record(0.0, x)
    return x


def test_feeder_waits_until_the_consumer_lets_go():
    stats = FeedStats(max_live=3, timeout=10.0)
    held = [_make(stats) for _ in range(3)]
    assert stats.live == 3
    made = []
    t = threading.Thread(target=lambda: made.append(_make(stats)))
    t.start()
    time.sleep(0.3)
    assert not made and t.is_alive()  # held back: 3 batches alive
    held.pop()  # the consumer drops one batch
    t.join(5)
    assert len(made) == 1 and stats.live == 3 and stats.peak_live == 3
    assert stats.snapshot()["waited_s"] >= 0.25


def test_reservations_count_so_racing_threads_cannot_overshoot():
    stats = FeedStats(max_live=4, timeout=10.0)
    keep, lock = [], threading.Lock()

    def worker():
        for _ in range(20):
            x = _make(stats)
            with lock:
                keep.append(x)
                if len(keep) > 2:
                    keep.pop(0)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert stats.batches == 80 and stats.peak_live <= 4


def test_a_consumer_that_never_lets_go_only_slows_the_feeder():
    stats = FeedStats(max_live=2, timeout=0.2)
    held = [_make(stats) for _ in range(3)]  # the third waits out the timeout
    assert len(held) == 3 and stats.live == 3 and stats.snapshot()["waited_s"] >= 0.15
    del held
    assert stats.live == 0
