"""What a run measured, as data: HdrHistogram counts, interval snapshots, run results and
the runlog/interval-log files they are written to. Pure: no sockets, no engine.
"""
