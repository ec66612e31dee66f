"""Small graph helpers shared by the API models and the ledger."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any, TypeVar

N = TypeVar("N", bound=Hashable)
_DONE: Any = object()  # next()'s default: Any, so the nodes it returns stay N


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


def topo_order(nodes: Iterable[N], edges: Callable[[N], Iterable[N]]) -> list[N]:
    """``nodes`` ordered so that every node comes after the nodes it points to (acyclic input)."""
    out: list[N] = []
    done: set[N] = set()
    listed = list(nodes)
    wanted = set(listed)

    def visit(n: N) -> None:
        stack = [(n, iter(edges(n)))]
        done.add(n)
        while stack:
            node, it = stack[-1]
            nxt = next(it, _DONE)
            if nxt is _DONE:
                stack.pop()
                out.append(node)
            elif nxt in wanted and nxt not in done:
                done.add(nxt)
                stack.append((nxt, iter(edges(nxt))))

    for n in listed:
        if n not in done:
            visit(n)
    return out
