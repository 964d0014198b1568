import pytest

# The shared scenarios assert outside the test modules: rewritten like a test's asserts,
# a failure shows the values compared, on the container and on the VM alike.
pytest.register_assert_rewrite("tests.system.scenarios", "tests.system.memdoor_units")
