"""Safetensors at the byte level: reading and checking a file's header and writing the
canonical one-tensor header (tensorfile), splitting a local file into tensor blobs
(tensorsplit), and splitting a download into tensor blobs as its bytes arrive
(tensorstream).

It may import the standard library and the store's own modules (``store.codec``,
``store.digest``, ``store.errors``, ``store.fs``, and ``store.objects``, whose batches
publish the blobs).
"""
