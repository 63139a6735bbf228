"""Recorded traffic: the .cltrace format, importers (HAR, JSONL), trace info and the
recording proxy.
"""
