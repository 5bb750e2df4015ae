"""Dependency-graph helpers over {step id: dependency ids}."""

from __future__ import annotations

from collections.abc import Mapping


def find_cycle(graph: Mapping[str, tuple[str, ...]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None. Iterative DFS: deep graphs cannot blow the stack."""
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(graph, white)
    for root in graph:
        if color[root] != white:
            continue
        path: list[str] = []
        stack: list[tuple[str, int]] = [(root, 0)]
        while stack:
            node, index = stack.pop()
            if index == 0:
                color[node] = grey
                path.append(node)
            deps = graph.get(node, ())
            if index < len(deps):
                stack.append((node, index + 1))
                dep = deps[index]
                if color.get(dep, black) == grey:
                    return [*path[path.index(dep) :], dep]
                if color.get(dep, black) == white:
                    stack.append((dep, 0))
            else:
                color[node] = black
                path.pop()
    return None


def upstream_of(step_id: str, graph: Mapping[str, tuple[str, ...]]) -> set[str]:
    """Every step `step_id` depends on, directly or transitively."""
    seen: set[str] = set()
    pending = list(graph.get(step_id, ()))
    while pending:
        dep = pending.pop()
        if dep not in seen and dep != step_id:
            seen.add(dep)
            pending.extend(graph.get(dep, ()))
    return seen


def topological_order(graph: Mapping[str, tuple[str, ...]]) -> list[str]:
    """Steps so that each comes after its dependencies; ties keep the given order."""
    order: list[str] = []
    placed: set[str] = set()
    remaining = list(graph)
    while remaining:
        ready = [s for s in remaining if all(d in placed for d in graph[s])]
        if not ready:
            raise ValueError("graph has a cycle")
        order.extend(ready)
        placed.update(ready)
        remaining = [s for s in remaining if s not in placed]
    return order
