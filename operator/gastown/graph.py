"""Small graph helpers shared by the API models and the ledger."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import TypeVar

N = TypeVar("N", bound=Hashable)
_DONE = object()


def find_cycle(nodes: Iterable[N], edges: Callable[[N], Iterable[N]]) -> list[N] | None:
    """Return one cycle as a path ``[a, b, ..., a]``, or None when the graph is acyclic.

    ``edges(n)`` lists the nodes ``n`` points to; nodes it names that are not in
    ``nodes`` are followed too. Iterative, so deep chains do not hit the recursion limit.
    """
    WHITE, GREY, BLACK = 0, 1, 2
    colour: dict[N, int] = {}
    for start in nodes:
        if colour.get(start, WHITE) != WHITE:
            continue
        path: list[N] = [start]
        stack: list[Iterator[N]] = [iter(edges(start))]
        colour[start] = GREY
        while stack:
            nxt = next(stack[-1], _DONE)
            if nxt is _DONE:
                colour[path.pop()] = BLACK
                stack.pop()
                continue
            state = colour.get(nxt, WHITE)
            if state == GREY:
                return path[path.index(nxt):] + [nxt]
            if state == WHITE:
                colour[nxt] = GREY
                path.append(nxt)
                stack.append(iter(edges(nxt)))
    return None
