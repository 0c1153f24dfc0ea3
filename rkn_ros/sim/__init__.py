"""rkn_ros.sim"""
