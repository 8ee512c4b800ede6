"""Run at start-up by every Python process with this folder on its
PYTHONPATH: the test suite's children get its network guard. (It shadows any
sitecustomize further down the path; test children need none.)"""
import netguard

netguard.install()
