"""The load engine: arrivals, workloads and request rendering, the stage driver over the
compiled core, and the pools that run a stage (one process, local worker processes).
The only package that imports crestline._core.
"""
