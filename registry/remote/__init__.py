"""Remotes: the configured remotes, push, pull, browsing, remote gc and restoring from them.

``config`` (the store's ``.modelstore/remotes.json``), ``refs`` (what a ref holds, read
strictly), ``push``, ``pull``, ``browse`` (list-models / model-info of a remote), ``gc``
(remote gc under a lock object), ``restore`` (a ``validate-registry --fix`` source).
The object I/O itself is ``store.remote``.
"""
