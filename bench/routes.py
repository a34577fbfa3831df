"""
Route lookup cost with 1 and with 1,000 routes, in-process (no network, so
the machine's drift between wrk runs does not blur a few per cent): the
routes of bench/run.py's routes-1000 scenario (half static paths, half with
a parameter), then ``RouteTable.match`` timed for

  remembered    GET /hello again (a match the table remembers)
  first time    a path never seen before each time (the trie is walked)

    .venv/bin/python bench/routes.py
"""

import timeit

from edgegw_tx.gateway.routes import RouteTable

ROUNDS = 200_000


def table(extra):
    routes = RouteTable()
    routes.add("hello", "*", "GET", "/hello", "hello")
    for i in range(1, extra + 1):
        path = f"/svc{i % 10}/v1/items{i}/{{id}}" if i % 2 else f"/svc{i % 10}/static{i}"
        routes.add(f"extra-{i}", "*", "GET", path, f"extra-{i}")
    return routes


def cost(routes, fresh):
    """Best of 9 runs, nanoseconds per match (the shortest is the least disturbed)."""
    if fresh:
        counter = iter(range(10**9))
        # A new parameter value each time: never remembered.
        call = lambda: routes.match("localhost:8080", "GET", f"/svc1/v1/items1/{next(counter)}")  # noqa: E731
    else:
        call = lambda: routes.match("localhost:8080", "GET", "/hello")  # noqa: E731
    return min(timeit.repeat(call, number=ROUNDS, repeat=9)) / ROUNDS * 1e9


def main():
    print("| lookup | 1 route (ns) | 1,000 routes (ns) | ratio |")
    print("| --- | --- | --- | --- |")
    one, thousand = table(1), table(999)
    for label, fresh in (("remembered (GET /hello again)", False), ("first time (new parameter value)", True)):
        a, b = cost(one, fresh), cost(thousand, fresh)
        print(f"| {label} | {a:.0f} | {b:.0f} | {b / a:.3f} |")


if __name__ == "__main__":
    main()
