"""rkn_ros.data"""
