"""rkn_ros.runtime"""
