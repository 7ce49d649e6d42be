"""Checking a store against its promises, read-only: ``validate-registry`` (``validate``)
and its findings (``findings``: stable codes), the registry and view checks, and the load
check of an imported model in a worker process (``loadcheck``).

May import: ``store``, ``adapters``, the top of ``registry``, ``registry.space``
(reachability), ``registry.hub.sink`` (the malloc policy shared with downloads).
"""
