"""The suite under pytest-xdist (the README's `pytest -n auto`): each worker in a DDS domain of
its own, the slowest modules handed out first."""

from __future__ import annotations

import conftest
from test_nodes_support import domain_id


def test_the_workers_of_one_run_never_share_a_domain() -> None:
    for controller in (4242, 4299, 123457):
        for workers in (2, 3, 16, 100):
            domains = [domain_id(controller + 1 + w, controller, f"gw{w}", workers)
                       for w in range(workers)]
            assert len(set(domains)) == workers, (controller, workers, domains)
            assert all(100 <= d <= 199 for d in domains)
    assert domain_id(4242, 1) == 142  # one process alone: from its own pid


def test_the_slowest_modules_come_first(request) -> None:
    ranks = [conftest.module_rank(item) for item in request.session.items]
    assert ranks == sorted(ranks)
