"""Root pytest setup: ``pytest`` runs the tests (``tests/``); ``pytest --benchmark`` runs the speed suites in
``benchmarks/`` with pytest-benchmark instead (its options, e.g. ``--benchmark-json FILE``, apply)."""
import pytest


def pytest_addoption(parser):
    parser.addoption("--benchmark", action="store_true", default=False,
                     help="run the speed benchmarks in benchmarks/ (pytest-benchmark) instead of the tests")


def pytest_configure(config):
    if not config.getoption("--benchmark"):
        return
    if not config.pluginmanager.hasplugin("benchmark"):
        raise pytest.UsageError("pytest --benchmark needs pytest-benchmark: pip install -e '.[test]'")
    if config.args_source != config.ArgsSource.ARGS:  # no paths given: the benchmark suites, not the tests
        config.args[:] = [str(config.rootpath / "benchmarks")]
