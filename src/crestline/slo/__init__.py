"""SLOs: parsing `--slo` terms and the one evaluator every verdict uses.
"""
