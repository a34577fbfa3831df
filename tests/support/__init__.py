"""
What the tests share, one module per concern: ``fakes`` (unit-test fakes of
the reactor, store, build plane, pools and service registry), ``workers`` (a
fake worker process and its reactor), ``builds`` (the build plane's fake
children and cargo samples), ``processes`` (fakes for ``--processes``),
``http`` (a raw HTTP/1.1 client), ``control`` (fakes of the endpoint
manager's parts' seams), ``handlers`` (Rust handler sources),
``harness`` (a real gateway), ``isolation`` and ``hardening`` (real workers
inspected in /proc).
"""
