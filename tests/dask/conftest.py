"""One Dask LocalCluster for the whole test session: 2 worker processes x 1 thread (the
workers import varinf afresh, as on a real cluster). Tests that kill a worker start their own.
Without dask and distributed (an optional extra) the folder is not collected."""

import importlib.util

import pytest

if any(importlib.util.find_spec(name) is None for name in ("dask", "distributed")):
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="session")
def cluster():
    from distributed import LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=40) as c:
        yield c


@pytest.fixture
def client(cluster):
    """A client of the session's cluster, active (the default) for the test's duration."""
    from distributed import Client
    with Client(cluster, set_as_default=True) as c:
        yield c
