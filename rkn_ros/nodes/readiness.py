"""Whether nodes are up, read from the ROS graph: their publishers, subscriptions and services.

A node of :mod:`rkn_ros.nodes.systems` is ready once every entity its :class:`NodeSpec` names
is in the graph under its resolved name (the estimator creates its ``~/reset`` service last,
after the model has loaded), whatever its log says or where its log goes.
"""

from __future__ import annotations

import rclpy
from rclpy.impl.implementation_singleton import rclpy_implementation
from rclpy.node import Node

from rkn_ros.nodes.systems import NodeSpec, resolve


class GraphWatcher:
    """An rclpy node of its own, on its own context, that only looks at the graph."""

    def __init__(self, domain_id: int, namespace: str = "") -> None:
        self._namespace = "/" + namespace.strip("/")
        self._context = rclpy.Context()
        rclpy.init(context=self._context, domain_id=domain_id)
        self._node = Node("rkn_demo_graph_watcher", context=self._context)

    def missing(self, spec: NodeSpec) -> list[str]:
        """What of ``spec``'s publishers, subscriptions and services the graph lacks yet
        (all of them while the node itself is not in the graph)."""
        namespace = self._namespace.strip("/")
        wanted = {
            "publisher": {resolve(spec, n, namespace) for n in spec.publishes},
            "subscription": {resolve(spec, n, namespace) for n in spec.subscribes},
            "service": {resolve(spec, n, namespace) for n in spec.serves},
        }
        queries = {
            "publisher": self._node.get_publisher_names_and_types_by_node,
            "subscription": self._node.get_subscriber_names_and_types_by_node,
            "service": self._node.get_service_names_and_types_by_node,
        }
        missing = []
        for kind, names in wanted.items():
            try:
                present = {name for name, _ in queries[kind](spec.name, self._namespace)}
            except rclpy_implementation.NodeNameNonExistentError:
                present = set()  # not discovered yet (or gone)
            missing += [f"{kind} {name}" for name in sorted(names - present)]
        return missing

    def close(self) -> None:
        self._node.destroy_node()
        rclpy.shutdown(context=self._context)
