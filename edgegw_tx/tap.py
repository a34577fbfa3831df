"""``twistd edgegw``: command-line options and the service they make."""

import os
import sys

from twisted.internet.endpoints import serverFromString
from twisted.python import usage

from edgegw_tx.admin.limits import BODY_TIMEOUT as ADMIN_BODY_TIMEOUT
from edgegw_tx.admin.limits import HEADER_TIMEOUT as ADMIN_HEADER_TIMEOUT
from edgegw_tx.admin.limits import MAX_BODY as ADMIN_MAX_BODY
from edgegw_tx.build.sandbox import DEFAULT_BUILD_USER, BuildSandbox, SandboxError
from edgegw_tx.datadir_lock import DataDirInUse, DataDirLock
from edgegw_tx.gateway.http import BODY_TIMEOUT
from edgegw_tx.gateway.observe import DEFAULT_SHUTDOWN_DELAY, health_path_option, shutdown_delay_option
from edgegw_tx.processes import NotSharable, check_sharable
from edgegw_tx.runtime import DEFAULT_HTTP, GatewayRuntime, snapshot_path
from edgegw_tx.store import StoreRefused
from edgegw_tx.store.uri import check_store, parse_store
from edgegw_tx.workers.isolation import (
    DEFAULT_WORKER_UIDS,
    Isolation,
    IsolationError,
    user_namespaces_allowed,
)

DEFAULT_SDK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "rust_sdk")
CRATE_SOURCES = ("auto", "debian", "crates-io")
HTTP_LAYERS = ("httptools", "twisted")

LIMITS = (
    ("max-body", str(16 * 1024 * 1024), "Largest request body on the data plane, in bytes (413 above).", "max_body"),
    ("max-headers", "100", "Most header fields in a request (431 above).", "max_headers"),
    ("max-header-bytes", str(64 * 1024), "Most bytes of header fields in a request (431 above).", "max_head"),
    ("header-timeout", "10", "Seconds from a request's first byte to the end of its headers (408 above).", "header_timeout"),
    ("body-timeout", f"{BODY_TIMEOUT:g}", "Seconds from the end of a request's headers to the end of its body (408 above).", "body_timeout"),
    ("idle-timeout", "60", "Seconds an idle keep-alive connection stays open.", "idle_timeout"),
)


class Options(usage.Options):
    optFlags = [
        [
            "no-warm-up",
            None,
            "Do not build the crates every handler needs into the build target at start"
            " (in the background, so that the first compile takes about a second; see README.md).",
        ],
    ]
    optParameters = [
        ["data-dir", "d", "./var", "Directory for the store, builds, artifacts and the admin key."],
        [
            "store",
            None,
            None,
            "Where the configuration lives: sqlite:PATH (default: edgegw.sqlite3 in the data dir) or"
            " postgresql://user:password@host:port/database, shared by every node of a cluster."
            " See docs/cluster.md.",
        ],
        [
            "node-name",
            None,
            None,
            "This node's name in a cluster (default: the host name and the data plane's port).",
        ],
        ["listen", "l", "tcp:9080", "Endpoint string for public traffic (data plane)."],
        [
            "admin-listen",
            "a",
            "tcp:9081:interface=127.0.0.1",
            "Endpoint string for the management API and Admin UI.",
        ],
        [
            "metrics-listen",
            None,
            None,
            "Endpoint string serving GET /metrics without an API key (default: none; the admin"
            " listener serves it with one). See docs/observability.md.",
        ],
        [
            "access-log",
            None,
            None,
            "Write one JSON line per data-plane request to this file, or - for standard output"
            " (default: off). Reopened on SIGHUP. See docs/observability.md.",
        ],
        [
            "access-log-max-bytes",
            None,
            None,
            "Rotate the access log when it reaches this many bytes (default: never; use logrotate"
            " and SIGHUP). With --processes N each process writes PATH.N.",
        ],
        [
            "health-path",
            None,
            "/healthz",
            "Path the data plane answers itself, before routing: 200 serving, 503 starting or"
            " draining; none to disable. It wins over a user route of the same path.",
        ],
        [
            "shutdown-delay",
            None,
            f"{DEFAULT_SHUTDOWN_DELAY:g}",
            "Seconds the data plane goes on serving after a stop begins, the health path answering"
            " 503, before the listeners close (give a load balancer time to take the node out)."
            " See docs/observability.md.",
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
        [
            "processes",
            None,
            "1",
            "Data-plane processes sharing the --listen socket (one per core: $(nproc));"
            " 1 serves from this process. See docs/processes.md.",
        ],
        [
            "worker-uids",
            None,
            "{}-{}".format(*DEFAULT_WORKER_UIDS),
            "When run as root, the range each endpoint's workers get a uid of their own from."
            " Give each gateway on a host its own range. See docs/isolation.md.",
        ],
        [
            "worker-user",
            None,
            None,
            "When run as root, one user all endpoints' workers share (a name, uid or uid:gid)"
            " instead of a uid each: weaker. See docs/isolation.md.",
        ],
        [
            "build-user",
            None,
            DEFAULT_BUILD_USER,
            "When run as root, the user cargo and rustc run as in the build sandbox (a name, uid"
            " or uid:gid; not root, not a worker's). See docs/isolation.md.",
        ],
        # The limits of docs/limits.md: (option, default, what, GatewayHTTPFactory keyword).
        *[[name, None, default, help_] for name, default, help_, _ in LIMITS],
        ["admin-max-body", None, str(ADMIN_MAX_BODY), "Largest management API request body, in bytes (413 above)."],
        [
            "admin-header-timeout",
            None,
            f"{ADMIN_HEADER_TIMEOUT:g}",
            "Seconds the management API waits for a request's headers (408 above).",
        ],
        [
            "admin-body-timeout",
            None,
            f"{ADMIN_BODY_TIMEOUT:g}",
            "Seconds the management API waits for a request's body once its headers are in (408 above).",
        ],
    ]

    def postOptions(self) -> None:
        for option in ("listen", "admin-listen", "metrics-listen"):
            if self[option] is None:
                continue
            try:
                # Parsing needs no reactor until the endpoint listens.
                serverFromString(None, self[option])
            except Exception as e:
                raise usage.UsageError(
                    f"--{option} {self[option]!r} is not a server endpoint string"
                    f" such as tcp:9080:interface=127.0.0.1 ({e})"
                )
        try:
            self["store-spec"] = parse_store(self["store"], self["data-dir"])
        except ValueError as e:
            raise usage.UsageError(str(e))
        if self["node-name"] is not None:
            name = self["node-name"].strip()
            if not name or len(name) > 200 or not name.isprintable():
                raise usage.UsageError(
                    f"--node-name {self['node-name']!r} must be 1 to 200 printable characters"
                )
            self["node-name"] = name
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
        try:
            self["processes"] = int(self["processes"])
        except ValueError:
            raise usage.UsageError(
                "--processes must be a whole number of processes (1 or more),"
                f" not {self['processes']!r}"
            )
        if self["processes"] < 1:
            raise usage.UsageError(
                f"--processes must be at least 1 (got {self['processes']});"
                " use $(nproc) for one per core"
            )
        if self["processes"] > 1:
            try:
                check_sharable(self["listen"])
            except NotSharable as e:
                raise usage.UsageError(str(e))
        self["http-limits"] = {}
        for name, _, _, keyword in LIMITS:
            self["http-limits"][keyword] = self._positive(name, float if "timeout" in name else int)
        self["admin-max-body"] = self._positive("admin-max-body", int)
        self._observability_options()
        self["admin-header-timeout"] = self._positive("admin-header-timeout", float)
        self["admin-body-timeout"] = self._positive("admin-body-timeout", float)
        try:
            isolation = Isolation.for_gateway(self["worker-user"], self["worker-uids"])
        except IsolationError as e:
            raise usage.UsageError(str(e))
        try:
            builds = BuildSandbox.for_gateway(self["build-user"])
        except SandboxError as e:
            raise usage.UsageError(str(e))
        if builds.user is None and not user_namespaces_allowed():
            raise usage.UsageError(
                "builds cannot be sandboxed: not running as root, bwrap needs an unprivileged"
                " user namespace and this kernel allows none (sysctl user.max_user_namespaces,"
                " kernel.unprivileged_userns_clone); run the gateway as root"
            )
        if builds.user is not None:
            low, high = isolation.uids
            shared = isolation.user.uid if isolation.user is not None else None
            if low <= builds.user.uid <= high or builds.user.uid == shared:
                raise usage.UsageError(
                    f"--build-user {self['build-user']} (uid {builds.user.uid}) is a worker's uid:"
                    f" builds need a uid of their own, outside --worker-uids {low}-{high}"
                    + (f" and --worker-user ({shared})" if shared is not None else "")
                )


    def _observability_options(self) -> None:
        """Check --access-log, --access-log-max-bytes, --health-path and --shutdown-delay."""
        path = self["access-log"]
        if path is not None and path != "-":
            path = self["access-log"] = os.path.abspath(path)
            folder = os.path.dirname(path)
            if not os.path.isdir(folder):
                raise usage.UsageError(f"--access-log {path}: the directory {folder} does not exist")
            if os.path.isdir(path):
                raise usage.UsageError(f"--access-log {path} is a directory, not a file")
        if self["access-log-max-bytes"] is not None:
            if path is None:
                raise usage.UsageError("--access-log-max-bytes needs --access-log")
            if path == "-":
                raise usage.UsageError("--access-log-max-bytes needs a file, not - (standard output)")
            self["access-log-max-bytes"] = int(self._positive("access-log-max-bytes", int))
        try:
            self["health-path"] = health_path_option(self["health-path"])
            self["shutdown-delay"] = shutdown_delay_option(self["shutdown-delay"])
        except ValueError as e:
            raise usage.UsageError(str(e))

    def _positive(self, name: str, kind: type[int] | type[float]) -> float:
        unit = "seconds" if kind is float else "a whole number"
        try:
            value = kind(self[name])
        except (TypeError, ValueError):
            raise usage.UsageError(f"--{name} must be {unit}, not {self[name]!r}")
        if not value > 0 or value != value or value == float("inf"):
            raise usage.UsageError(f"--{name} must be more than 0 (got {self[name]})")
        return value


def makeService(config: Options) -> GatewayRuntime:
    """
    The gateway, holding its data dir's lock: a second gateway on the same
    data dir ends here, before it daemonises, with one line naming the pid
    that holds it (SystemExit: twistd prints it, no traceback); so does one
    whose store a newer edgegw wrote, naming both schema versions, and one
    whose PostgreSQL store refuses the login, names no database it has, or
    cannot be reached (unless the node has its last-known configuration:
    then it says so and starts from it).
    """
    lock = DataDirLock(config["data-dir"])
    try:
        lock.acquire()
    except DataDirInUse as e:
        raise SystemExit(str(e))
    except OSError as e:
        raise SystemExit(f"cannot lock the data dir {config['data-dir']}: {e.strerror or e} ({lock.path})")
    try:
        notice = check_store(config["store-spec"], snapshot_path(config["data-dir"]))
    except StoreRefused as e:
        lock.release()
        raise SystemExit(str(e))
    if notice is not None:
        # The database is down, the node has its last-known configuration: it starts from that.
        print(notice, file=sys.stderr)
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
        processes=config["processes"],
        worker_user=config["worker-user"],
        worker_uids=config["worker-uids"],
        build_user=config["build-user"],
        http_limits=config["http-limits"],
        admin_max_body=config["admin-max-body"],
        admin_header_timeout=config["admin-header-timeout"],
        admin_body_timeout=config["admin-body-timeout"],
        data_dir_lock=lock,
        store_spec=config["store-spec"],
        node_name=config["node-name"],
        metrics_listen=config["metrics-listen"],
        access_log=config["access-log"],
        access_log_max_bytes=config["access-log-max-bytes"],
        health_path=config["health-path"],
        shutdown_delay=config["shutdown-delay"],
        # The first compile as quick as the rest: the common crates built in the background.
        warm_up=not config["no-warm-up"],
    )
