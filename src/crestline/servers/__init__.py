"""Loopback servers for demos, tests and benches: the demo model server, the test target
and their request builders. Not imported by the product packages.
"""
