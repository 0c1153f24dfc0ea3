"""rkn_ros.train"""
