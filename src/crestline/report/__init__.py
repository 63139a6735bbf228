"""Reports: pure readers of results and runlogs (terminal text, interval logs, HTML with
figures, compare). Never imports the engine.
"""
