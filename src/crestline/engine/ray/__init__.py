"""Past one host: engine actors on a Ray cluster, one pool behind the pool protocol.

`pool.RayPool` (chosen by `--cluster ray` or `--cluster ray://HOST:PORT`) holds one engine
actor per client core (`actor.EngineActor`), each with its share of every stage's schedule,
started on one shared start time translated into each actor's own clock (`clock`). Each
interval the actors send counters and V2-encoded HDR histograms (`wire`), never raw samples,
and the driver merges them exactly; each member's own figures and faults (`members`) ride on
the merged interval. Ray itself is imported only here, and only when a cluster is asked for
(`pip install crestline[ray]`).
"""
