"""Waiting for a condition with a deadline, for every client test here."""
import time


def eventually(what, check, limit=60, every=0.2):
    """The first true value of `check()`, polled every `every` s; fails after `limit` s."""
    deadline = time.time() + limit
    while True:
        value = check()
        if value:
            return value
        assert time.time() < deadline, f"timed out after {limit}s waiting for {what}"
        time.sleep(every)
