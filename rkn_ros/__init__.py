"""rkn_ros: Recurrent Kalman Network state estimation for ROS 2."""

__version__ = "0.1.0"
