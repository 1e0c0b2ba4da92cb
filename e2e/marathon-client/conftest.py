"""Fixtures for the marathon client tests: the server URL and a connected client."""
import collections
import collections.abc
import os

# marathon 0.13.0 still imports the ABC aliases that Python 3.10 removed from `collections`.
for _name in ("Iterable", "Mapping", "MutableMapping", "Sequence", "Callable", "MutableSet", "Set"):
    if not hasattr(collections, _name):
        setattr(collections, _name, getattr(collections.abc, _name))

import pytest  # noqa: E402
from marathon import MarathonClient  # noqa: E402
from waiting import eventually  # noqa: E402


@pytest.fixture(scope="session")
def client():
    return MarathonClient(os.environ["MARATHON_URL"], username=os.environ["MARATHON_USER"],
                          password=os.environ["MARATHON_PASSWORD"], timeout=30)


@pytest.fixture(scope="session")
def credentials():
    """Marathon's basic credentials, for requests sent by hand."""
    return os.environ["MARATHON_USER"], os.environ["MARATHON_PASSWORD"]


@pytest.fixture(autouse=True)
def no_deployment_left(client):
    """Both clients' own suites wait for /v2/deployments to empty after every test: it must,
    within a few seconds."""
    yield
    eventually("every deployment to end after the test", lambda: not client.list_deployments(), limit=10)
