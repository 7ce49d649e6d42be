"""The Hugging Face Hub: parsing a source (``source``), listing and download (``download``,
``sink``), weight files split while they stream (``stream``), the license (``license``),
``import-model`` from the Hub (``importer``) and restoring blobs from a Hub origin
(``restore``).

May import: ``store``, ``adapters``, the top of ``registry``, ``registry.ingest``,
``registry.check`` (the load check).
"""
