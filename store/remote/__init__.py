"""Remotes' raw object I/O: URLs, one backend per scheme, verified transfers; no names.

``backend`` (the URL, the small interface every backend implements, the key rules),
``file`` (``file://``: a folder, plain POSIX calls), ``s3`` (``s3://``: any S3-compatible
server, through obstore), ``connect`` (a backend from a URL), ``objects`` (``RemoteStore``:
the FORMAT check, blobs by digest uploaded and downloaded verified, refs written only by
conditional writes) and ``errors``.

May import: ``store``. The names, push, pull and remote gc are ``registry.remote``'s.
"""
