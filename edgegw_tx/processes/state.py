"""
What every data-plane process must hold, as the commands that rebuild it.

The control process changes the data planes with commands (``configure_service``,
``bind``, ``start_pool``, ``route``, ...). ``PlaneState`` keeps the net effect of
every command applied so far, so a data-plane process that starts late (a
respawn) gets the same state with ``PlaneState.replay``: services, then
bindings, then pools, then routes (the consumers' keys before them all), each in the order they were made (a route
names a pool, a pool's calls name bindings, a binding names a service).
Before those it gets the node's health: ``restoring`` while the control
process restores its endpoints at start, ``drain`` once a stop has begun, so
the process's health path answers 503 as the control process would.
"""

from __future__ import annotations

from typing import Any

Command = tuple[str, dict[str, Any]]

COMMANDS = frozenset(
    {
        "configure_service",
        "remove_service",
        "bind",
        "unbind",
        "start_pool",
        "stop_pool",
        "route",
        "unroute",
        "consumers",
        "restoring",
        "drain",
    }
)
"""The commands that change the state (``snapshot``, ``listen`` only ask or act)."""


class PlaneState:
    """The net effect of the state-changing commands, in replayable order."""

    def __init__(self) -> None:
        # Dicts keep insertion order: replay repeats the order things were made in.
        self.services: dict[Any, dict[str, Any]] = {}
        self.bindings: dict[tuple[Any, str], Any] = {}
        self.pools: dict[int, dict[str, Any]] = {}
        self.routes: dict[Any, dict[str, Any]] = {}
        #: The consumers' keys (``ConsumerKeys.load`` records), as last sent; None: never sent.
        self.consumers: list[dict[str, Any]] | None = None
        #: The control process is restoring its endpoints (health: starting).
        self.restoring = False
        #: A stop has begun (health: draining); never undone.
        self.draining = False

    def apply(self, command: str, args: dict[str, Any]) -> None:
        """Record ``command``; a command that changes nothing here raises ``ValueError``."""
        if command == "configure_service":
            service = args["service"]
            self.services.pop(service["id"], None)
            self.services[service["id"]] = service
        elif command == "remove_service":
            self.services.pop(args["service_id"], None)
        elif command == "bind":
            key = (args["endpoint_id"], args["pool_id"])
            self.bindings.pop(key, None)
            self.bindings[key] = args["service_id"]
        elif command == "unbind":
            self.bindings.pop((args["endpoint_id"], args["pool_id"]), None)
        elif command == "start_pool":
            self.pools[args["pool"]] = dict(args)
        elif command == "stop_pool":
            self.pools.pop(args["pool"], None)
        elif command == "route":
            self.routes.pop(args["key"], None)
            self.routes[args["key"]] = dict(args)
        elif command == "unroute":
            self.routes.pop(args["key"], None)
        elif command == "consumers":
            self.consumers = list(args["records"])
        elif command == "restoring":
            self.restoring = bool(args["restoring"])
        elif command == "drain":
            self.draining = True
        else:
            raise ValueError(f"{command!r} does not change a data plane's state")

    def replay(self) -> list[Command]:
        """The commands that give a fresh data-plane process this state."""
        commands: list[Command] = []
        if self.draining:
            commands.append(("drain", {}))
        if self.restoring:
            commands.append(("restoring", {"restoring": True}))
        if self.consumers is not None:
            commands.append(("consumers", {"records": list(self.consumers)}))
        commands.extend(("configure_service", {"service": s}) for s in self.services.values())
        commands.extend(
            ("bind", {"endpoint_id": e, "pool_id": p, "service_id": s})
            for (e, p), s in self.bindings.items()
        )
        commands.extend(("start_pool", dict(spec)) for spec in self.pools.values())
        commands.extend(("route", dict(route)) for route in self.routes.values())
        return commands
