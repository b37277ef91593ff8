"""The real ``prefect server`` fixtures of tests/deployments, for the nightly end-to-end tests.

Imported rather than copied: ``prefect_server`` (API URL of a real server from .venv),
``prefect_env`` (the environment of CLI / worker processes talking to it), ``prefect_home`` and
``spawn`` (subprocesses in their own process group, killed after the test).
"""

from tests.deployments.conftest import (  # noqa: F401  (fixtures, registered by name)
    prefect_env,
    prefect_home,
    prefect_server,
    private_prefect_server,
    session_prefect_server,
    spawn,
)
