"""A small synthetic web shop's traffic, as JSON-lines access-log records: the same traffic every
time for a seed. It has what real samples at hand lack (loghub's OpenStack lines carry no query
parameters): typed and ranged query parameters, roles, per-user ids, call order and rates.

Users browse pages of products (`?page` 1-20, `?size` 20 or 50, `?sort`), view products, search
(`?q`, a word), add a viewed product to the cart (`?product`, `?qty` 1-5), check out (`POST
/orders`), read the new order (`GET /orders/{id}`) and sometimes cancel it (`DELETE` after
the read), and read their own profile (`/users/{their id}/profile`). Two admins also fetch
reports (`?from_day` <= `?to_day`). Each user acts every 1 to 6 seconds within sessions.
"""

from __future__ import annotations

import json

import numpy as np

WORDS = ("lamp", "chair", "table", "desk", "sofa", "rug", "shelf", "mirror", "clock", "vase", "bed", "stool")


def shop_traffic(seed: int = 0, users: int = 30, sessions: int = 120, start: float = 1.7e9) -> list[dict]:
    """Requests (dicts with time, method, path, query, status, latency, size, user), in time order."""
    rng = np.random.default_rng(seed)
    names = [f"u{100 + i}" for i in range(users)]
    admins = ["admin1", "admin2"]
    requests = []
    order_id = 50_000
    for k in range(sessions):
        t = start + float(rng.uniform(0, 6 * 3600))
        user = admins[(k // 10) % 2] if k % 10 == 0 else names[int(rng.integers(users))]

        def call(method, path, query="", status=200, size=(200, 2000), latency=0.05):
            nonlocal t
            t += float(rng.uniform(1.0, 6.0))
            requests.append({"time": round(t, 3), "method": method, "path": path, "query": query, "status": status,
                             "latency": round(float(latency * rng.lognormal(0.0, 0.3)), 4),
                             "size": int(rng.integers(*size)), "user": user})

        if user in admins:
            for _ in range(int(rng.integers(1, 4))):
                a = int(rng.integers(1, 300))
                call("GET", "/admin/reports", f"from_day={a}&to_day={a + int(rng.integers(0, 30))}", size=(5000, 9000),
                     latency=0.4)
            continue
        call("GET", f"/users/{user}/profile", size=(300, 600))
        viewed = []
        for _ in range(int(rng.integers(2, 8))):
            step = rng.random()
            if step < 0.4:
                call("GET", "/products", f"page={int(rng.integers(1, 21))}&size={rng.choice([20, 50])}"
                                         f"&sort={rng.choice(['price', 'name'])}", size=(3000, 8000), latency=0.1)
            elif step < 0.6:
                call("GET", "/search", f"q={rng.choice(WORDS)}", size=(1000, 4000), latency=0.08)
            else:
                product = int(rng.integers(1000, 2000))
                missing = rng.random() < 0.05
                call("GET", f"/products/{product}", status=404 if missing else 200,
                     size=(100, 200) if missing else (800, 1500))
                if not missing:
                    viewed.append(product)
        if viewed and rng.random() < 0.6:
            for product in viewed[:int(rng.integers(1, len(viewed) + 1))]:
                call("POST", "/cart/items", f"product={product}&qty={int(rng.integers(1, 6))}", status=201,
                     size=(100, 300))
            call("GET", "/cart", size=(400, 1200))
            order_id += int(rng.integers(1, 50))
            call("POST", "/orders", status=201, size=(200, 400), latency=0.2)
            call("GET", f"/orders/{order_id}", size=(500, 1500))
            if rng.random() < 0.3:
                call("DELETE", f"/orders/{order_id}", status=204, size=(0, 1))
    requests.sort(key=lambda r: r["time"])
    return requests


def as_lines(requests: list[dict]) -> list[str]:
    """The requests as JSON lines (the `jsonl` access-log format)."""
    return [json.dumps(r) for r in requests]
