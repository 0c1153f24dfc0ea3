"""``rkn_lifecycle_estimator``: the estimator as a managed (lifecycle) node, for stacks brought
up and down by a lifecycle manager, as nav2's (docs/runtime.md, "Lifecycle").

The same parts as ``rkn_estimator`` (:class:`rkn_ros.nodes.estimator_parts.EstimatorParts`), the
same default name and parameters, so the same YAML files apply; only the moments differ:

- construction: the parameters are declared (unconfigured: nothing loaded);
- ``configure``: the model is loaded and checked against the parameters, the publishers, the
  ``~/reset`` service and ``/diagnostics`` are made (a model that cannot serve fails the
  transition with its reason and the node stays unconfigured);
- ``activate``: the inputs are subscribed and the estimates published;
- ``deactivate``: inputs unsubscribed, nothing more published; the model and belief stay;
- ``cleanup``: the model and publishers are freed; ``shutdown`` does the same from any state.
"""

from __future__ import annotations

import sys

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from rkn_ros.nodes.estimator_parts import NODE_NAME, EstimatorParts
from rkn_ros.nodes.params import run_node
from rkn_ros.nodes.startup import StartupError


class LifecycleEstimator(EstimatorParts, LifecycleNode):
    """The managed estimator (module docstring)."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self.declare_estimator()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.configure_estimator()
        except StartupError as err:
            self.get_logger().error(f"configure failed: {err}")
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.activate_estimator()
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.deactivate_estimator()
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.cleanup_estimator()
        return TransitionCallbackReturn.SUCCESS

    # shutdown (from any state) and an error free everything too: nothing is held after them
    on_shutdown = on_error = on_cleanup

def main(args: list[str] | None = None) -> int:
    """Console script ``rkn_lifecycle_estimator``: waits unconfigured for its transitions."""
    return run_node(NODE_NAME, LifecycleEstimator, args, (StartupError,))


if __name__ == "__main__":
    sys.exit(main())
