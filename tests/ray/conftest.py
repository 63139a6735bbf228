"""A local Ray for the tests in this folder: started once per module (a few seconds), with
two CPUs for two engine actors, no dashboard and a small object store; stopped after it.
The pools the tests open find it running and leave it running."""

from __future__ import annotations

import pytest
import ray


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024 * 1024,
             log_to_driver=False)
    yield
    ray.shutdown()
