"""``twistd edgegw``: command-line options and the service they make."""

import os

from twisted.internet.endpoints import serverFromString
from twisted.python import usage

from edgegw_tx.runtime import DEFAULT_HTTP, GatewayRuntime

DEFAULT_SDK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "rust_sdk")
CRATE_SOURCES = ("auto", "debian", "crates-io")
HTTP_LAYERS = ("httptools", "twisted")


class Options(usage.Options):
    optParameters = [
        ["data-dir", "d", "./var", "Directory for the store, builds, artifacts and the admin key."],
        ["listen", "l", "tcp:9080", "Endpoint string for public traffic (data plane)."],
        [
            "admin-listen",
            "a",
            "tcp:9081:interface=127.0.0.1",
            "Endpoint string for the management API and Admin UI.",
        ],
        ["cargo", None, None, "Path of the cargo binary (default: PATH, then ~/.cargo/bin)."],
        ["sdk", None, DEFAULT_SDK, "Directory of the rust-edge-gateway-sdk crate."],
        ["crates", None, "auto", "Where crates come from: auto, debian or crates-io."],
        ["max-frame", None, str(16 * 1024 * 1024), "Largest frame a worker may send, in bytes."],
        [
            "http",
            None,
            DEFAULT_HTTP,
            "HTTP layer of the data plane: httptools (fast) or twisted (twisted.web).",
        ],
        [
            "keep-versions",
            None,
            "10",
            "Compiled versions kept per endpoint (older ones and their unused binaries are pruned).",
        ],
    ]

    def postOptions(self):
        for option in ("listen", "admin-listen"):
            try:
                # Parsing needs no reactor until the endpoint listens.
                serverFromString(None, self[option])
            except Exception as e:
                raise usage.UsageError(
                    f"--{option} {self[option]!r} is not a server endpoint string"
                    f" such as tcp:9080:interface=127.0.0.1 ({e})"
                )
        if self["http"] not in HTTP_LAYERS:
            raise usage.UsageError("--http must be one of: " + ", ".join(HTTP_LAYERS))
        if self["crates"] not in CRATE_SOURCES:
            raise usage.UsageError("--crates must be one of: " + ", ".join(CRATE_SOURCES))
        if not os.path.isfile(os.path.join(self["sdk"], "Cargo.toml")):
            raise usage.UsageError(f"--sdk {self['sdk']}: no Cargo.toml there")
        if self["cargo"] is not None and not os.access(self["cargo"], os.X_OK):
            raise usage.UsageError(f"--cargo {self['cargo']}: not an executable file")
        try:
            self["max-frame"] = int(self["max-frame"])
        except ValueError:
            raise usage.UsageError("--max-frame must be a number of bytes")
        if self["max-frame"] < 1024:
            raise usage.UsageError("--max-frame must be at least 1024 bytes")
        try:
            self["keep-versions"] = int(self["keep-versions"])
        except ValueError:
            raise usage.UsageError("--keep-versions must be a whole number")
        if self["keep-versions"] < 1:
            raise usage.UsageError("--keep-versions must be at least 1")


def makeService(config):
    return GatewayRuntime(
        data_dir=config["data-dir"],
        listen=config["listen"],
        admin_listen=config["admin-listen"],
        sdk_path=config["sdk"],
        cargo=config["cargo"],
        crate_source=config["crates"],
        max_frame=config["max-frame"],
        keep_versions=config["keep-versions"],
        http=config["http"],
    )
