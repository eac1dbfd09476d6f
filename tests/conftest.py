"""Every test sees saliencylab's log lines on stderr, as a user of the command line does."""

import pytest

from saliencylab.core import progress


@pytest.fixture(autouse=True, scope="session")
def log_to_stderr():
    progress.log_to_stderr()
