"""The fuzz modules' feeder: one per module and protocol, its kwargs (feed.Feeder's) given by
the module's `pytestmark` parametrisation of `feeder`, indirect."""

import feed
import pytest


@pytest.fixture(scope="module")
def feeder(request):
    f = feed.Feeder(**request.param)
    yield f
    f.close()
