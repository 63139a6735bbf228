"""Transports behind the core's seam (crestline._seam), as the engine picks them for a URL:
TLS client contexts (tls) and the Connector factory for a run (connect)."""
