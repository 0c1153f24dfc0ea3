"""rkn_ros.sim: simulators in numpy only (no torch, no ROS).

- :mod:`~rkn_ros.sim.pendulum`: n-link pendulum physics (chain of rods, vectorized)
- :mod:`~rkn_ros.sim.render`: grey anti-aliased images with occlusion
- :mod:`~rkn_ros.sim.image_noise`: the paper's correlated image noise and frame drops
- :mod:`~rkn_ros.sim.pendulum_sim`: :class:`PendulumSimulator`, stepped one tick at a time
- :mod:`~rkn_ros.sim.pneumatic`: a joint driven by two pneumatic muscles, batch
  (:func:`~rkn_ros.sim.pneumatic.simulate`) and stepped (:class:`PneumaticJoint`)
"""

from rkn_ros.sim.pendulum import PendulumParams
from rkn_ros.sim.pendulum_sim import PendulumSimulator
from rkn_ros.sim.pneumatic import PneumaticJoint, PneumaticParams, PneumaticTruth
from rkn_ros.sim.render import RenderParams

__all__ = ["PendulumParams", "PendulumSimulator", "PneumaticJoint", "PneumaticParams",
           "PneumaticTruth", "RenderParams"]
