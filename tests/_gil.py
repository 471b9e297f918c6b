"""Does one long call into the C++ core release the GIL? A second Python thread counts while
the call runs; with the GIL held for the whole call it could not run a single bytecode between
the call's start and its end."""

import threading
import time


def ticks_during(call):
    """(ticks of a counting Python thread in the middle half of ``call()``, call's seconds)."""
    stamps, stop = [], threading.Event()

    def count():
        while not stop.is_set():
            stamps.append(time.perf_counter())

    counter = threading.Thread(target=count)
    counter.start()
    try:
        while not stamps:  # the counter is running before the call starts
            time.sleep(0.001)
        start = time.perf_counter()
        call()
        end = time.perf_counter()
    finally:
        stop.set()
        counter.join()
    quarter = (end - start) / 4
    return sum(start + quarter < t < end - quarter for t in stamps), end - start


def assert_releases_gil(call):
    """Fails when a counting thread made no progress during the middle half of ``call()``.
    varinf runs on one thread meanwhile, so that the counter has a core even on 2 cores.
    Make the call last a few tenths of a second: a short one may end before the counter runs."""
    import varinf as vi

    before = vi.get_num_threads()
    vi.set_num_threads(1)
    try:
        ticks, seconds = ticks_during(call)
    finally:
        vi.set_num_threads(before)
    assert ticks > 0, f"no Python bytecode ran during the middle of the {seconds:.3f} s call: it held the GIL"
