"""rkn_ros.core"""
