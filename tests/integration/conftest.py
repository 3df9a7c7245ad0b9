"""Fixtures shared by the integration tests of more than one module (names unique to their feature:
a conftest fixture overrides a ``pytest_plugins`` fixture of the same name)."""

from tests.integration.nudge_fixtures import make_world, nudge_graph_sim  # noqa: F401 - the nudge tests' fixtures
