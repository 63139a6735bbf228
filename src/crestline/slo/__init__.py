"""SLOs: parsing `--slo` terms (parse), one class per kind of bound behind one seam (bound,
registry), and the one evaluator every verdict uses (evaluate).
"""
