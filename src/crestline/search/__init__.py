"""The capacity search: the pure policy (snapshots in, decisions out), the step judge, warm-up
detection and the virtual-time simulator. Never imports the engine.
"""
