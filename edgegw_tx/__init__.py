"""edgegw: an API gateway on Twisted that runs HTTP handlers written in Rust."""

from edgegw_tx import compiled as _compiled

__version__ = "0.1.0"

# Before any request-path module is imported: compiled, or their sources.
_compiled.choose()
