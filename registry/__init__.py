"""The registry layer: names over the store, and one room per job.

At the top: names (``names``), ``models/registry.json`` (``registry_file``), views
(``views``), debris names under ``models/`` (``debris``), lineage, the registry's
operations (``ops``: register, get, list, delete), the workspace, checkpoints, model info,
the reporter protocol, and ``importer`` (the one entry to import a model). Rooms:
``ingest/`` (local sources), ``hub/`` (the Hugging Face Hub), ``check/`` (validate, load
check), ``repair/`` (``validate-registry --fix``), ``space/`` (reachability, du, gc).

May import: ``store``, ``adapters``. Never ``training`` or ``cli``.
"""
