"""Suite-wide test settings."""

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
