"""edgegw: an API gateway on Twisted that runs HTTP handlers written in Rust."""

__version__ = "0.1.0"
