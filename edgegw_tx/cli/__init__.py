"""
``edgegw``: the command-line client of the management API (docs/cli.md).

    edgegw deploy hello.rs --path /hello --method GET
    edgegw ls
    edgegw logs hello --follow
    edgegw import petstore.yaml --create-collection
    edgegw keys create ci --scope read
    edgegw keys reset-admin --data-dir ./var     # lost admin.key, gateway stopped

The commands live in ``edgegw_tx.cli.commands``; this module is only the
console script's entry point, kept free of imports so that a Ctrl-C at any time
after start-up, even while Twisted is still being imported, ends with
"interrupted" and exit 130 rather than a traceback.
"""

import sys

INTERRUPTED = 130


def main(argv: list[str] | None = None) -> None:
    """The ``edgegw`` console script."""
    try:
        from edgegw_tx.cli.commands import main as run_main

        run_main(argv)
    except KeyboardInterrupt:
        # Ctrl-C while the reactor did not own SIGINT (importing, or after it stopped).
        sys.stderr.write("interrupted\n")
        sys.exit(INTERRUPTED)


if __name__ == "__main__":
    main()
