"""rkn_ros.nodes"""
