"""Suite-wide test settings."""

import collections
import os

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tiny models spend their time synchronising threads: on a 2-core machine one thread measured 4-20x faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="session")
def private_hash_cache(tmp_path_factory):
    """Provenance hashes are cached in the user's cache folder by default; the tests, and the workflow runs they
    start (which inherit the environment), keep theirs apart."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ONMERGE_HASH_CACHE", str(tmp_path_factory.mktemp("hash-cache")))
        yield


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under xdist, with the README's `-n 2 --dist loadfile --no-loadscope-reorder`: a module goes whole to one worker
    (its module-scoped fixtures, the smoke pipeline's run among them, are made once; xdist 3.8's loadgroup does not
    group under pytest 9.2), and the modules are handed out in collection order. The modules with the most slow tests
    come first, so that tests/test_workflow.py (minutes) starts at once and the other worker takes the short modules
    meanwhile, rather than it starting last and running alone. Without xdist the files keep their order."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    slow = collections.Counter(item.path for item in items if item.get_closest_marker("slow"))
    items.sort(key=lambda item: -slow[item.path])  # stable: within a module, and among equals, the files' order
