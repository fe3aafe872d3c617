"""Lineage: which sources send which events, and which attributes those events feed
(attribute <- events <- sources), with counts, laid out in three columns for the UI's SVG.

Reads `events`, `governance.attribute_definitions` and, when it exists, `governance.sources`.
"""

from __future__ import annotations

from typing import Any

import psycopg

from c360.governance import attributes
from c360.runtime import Runtime

#: Column x per layer, and the gap between rows: the UI draws nodes at these points.
LAYER_X = {"source": 0, "event": 1, "attribute": 2}
ROW_GAP = 1


def graph(runtime: Runtime) -> dict[str, list[dict[str, Any]]]:
    """Nodes (`id`, `kind`, `label`, `count`, `x`, `y`) and edges (`from`, `to`, `count`)."""
    with runtime.pool.connection() as conn:
        flows = conn.execute(
            "SELECT source, coalesce(event, type), count(*) FROM events GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()
        sources = _registered_sources(conn)
        definitions = [
            d for d in attributes.list_definitions(conn) if d.status != "retired" and d.source
        ]
    nodes: dict[str, dict[str, Any]] = {}
    edges: list[dict[str, Any]] = []
    for source in sources:
        _node(nodes, "source", source, 0)
    for source, event, count in flows:
        _node(nodes, "source", source, count)
        _node(nodes, "event", event, count)
        edges.append({"from": f"source:{source}", "to": f"event:{event}", "count": count})
    event_counts = {name: node["count"] for name, node in _of_kind(nodes, "event")}
    for d in definitions:
        if d.trait is None and d.aggregation is None:
            continue  # identifiers come from every event: they are not an aggregate's lineage
        _node(nodes, "attribute", d.name, 0, pii=d.pii)
        for event in _feeding(d, event_counts):
            count = event_counts[event]
            edges.append({"from": f"event:{event}", "to": f"attribute:{d.name}", "count": count})
            nodes[f"attribute:{d.name}"]["count"] += count
    return {"nodes": _laid_out(nodes), "edges": edges}


def as_dot(lineage: dict[str, list[dict[str, Any]]]) -> str:
    """The graph in Graphviz DOT, for people who draw it elsewhere."""
    lines = ["digraph lineage {", "  rankdir=LR;"]
    for node in lineage["nodes"]:
        label = f"{node['label']}\\n{node['count']}".replace('"', "'")
        lines.append(f'  "{node["id"]}" [label="{label}", shape={_SHAPES[node["kind"]]}];')
    for edge in lineage["edges"]:
        lines.append(f'  "{edge["from"]}" -> "{edge["to"]}" [label="{edge["count"]}"];')
    lines.append("}")
    return "\n".join(lines)


_SHAPES = {"source": "box", "event": "ellipse", "attribute": "note"}


def _registered_sources(conn: psycopg.Connection) -> list[str]:
    """Sources from governance.sources when that table exists (another migration adds it)."""
    exists = conn.execute("SELECT to_regclass('governance.sources')").fetchone()
    if not exists or exists[0] is None:
        return []
    columns = {
        row[0]
        for row in conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = 'governance' AND table_name = 'sources'"
        )
    }
    column = next((c for c in ("name", "source", "label") if c in columns), None)
    if column is None:
        return []
    return [row[0] for row in conn.execute(f"SELECT DISTINCT {column} FROM governance.sources")]


def _feeding(d: attributes.Definition, event_counts: dict[str, int]) -> list[str]:
    """The event names a definition reads: its names, or every event for none (a trait comes
    from identify events and any event's context.traits)."""
    if d.trait is not None:
        return sorted(name for name in event_counts if name == "identify")
    if d.event_names:
        return sorted(name for name in event_counts if name in d.event_names)
    return sorted(event_counts)


def _node(nodes: dict[str, dict[str, Any]], kind: str, label: str, count: int, **extra: Any):
    node = nodes.setdefault(
        f"{kind}:{label}", {"id": f"{kind}:{label}", "kind": kind, "label": label, "count": 0}
    )
    node["count"] += count
    node.update(extra)


def _of_kind(nodes: dict[str, dict[str, Any]], kind: str) -> list[tuple[str, dict[str, Any]]]:
    return [(node["label"], node) for node in nodes.values() if node["kind"] == kind]


def _laid_out(nodes: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each node at x = its layer, y = its row within the layer (by label)."""
    out = []
    for kind, x in LAYER_X.items():
        for row, (_label, node) in enumerate(sorted(_of_kind(nodes, kind))):
            out.append({**node, "x": x, "y": row * ROW_GAP})
    return out
