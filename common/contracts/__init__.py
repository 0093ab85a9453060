"""Contract tests: behaviour written once and run by every stage that has the concern.

A stage runs a contract by importing it into one of its test modules, e.g.
`tests/test_proxy_contract.py`:

    from common.contracts.proxy import *  # noqa: F403

The contract's tests and module-scoped fixtures then belong to that module, and its
conftest.py supplies what differs per stage (see each contract's docstring).
"""
