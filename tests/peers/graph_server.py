"""In-memory knowledge-graph MCP server over SSE: a stand-in for "grynya" in Klym's tests.

Usage: python graph_server.py --port N
Serves SSE at http://127.0.0.1:N/sse (messages at /messages/). Logs go to stderr only.
"""

import argparse
import asyncio
import json

from mcp.server.fastmcp import FastMCP
from pydantic import BaseModel


class Entity(BaseModel):
    name: str
    entityType: str
    observations: list[str]


class Observation(BaseModel):
    entityName: str
    contents: list[str]


# name -> Entity; insertion order is the order read_graph reports.
graph: dict[str, Entity] = {}


def build(port: int) -> FastMCP:
    mcp = FastMCP("grynya-standin", host="127.0.0.1", port=port, log_level="WARNING")

    @mcp.tool()
    def create_entities(entities: list[Entity]) -> str:
        """Create entities; ones whose name already exists are skipped. Returns the created ones as JSON."""
        created = [e for e in entities if e.name not in graph]
        for e in created:
            graph[e.name] = e
        return json.dumps([e.model_dump() for e in created])

    @mcp.tool()
    def add_observations(observations: list[Observation]) -> str:
        """Append observations to existing entities. Returns what was added as JSON."""
        added = []
        for o in observations:
            entity = graph.get(o.entityName)
            if entity is None:
                raise ValueError(f"Entity with name {o.entityName} not found")
            new = [c for c in o.contents if c not in entity.observations]
            entity.observations.extend(new)
            added.append({"entityName": o.entityName, "addedObservations": new})
        return json.dumps(added)

    @mcp.tool()
    def read_graph() -> str:
        """Return the whole graph as JSON: {"entities": [...], "relations": []}."""
        return json.dumps({"entities": [e.model_dump() for e in graph.values()], "relations": []})

    @mcp.tool()
    async def slow(seconds: float) -> str:
        """Sleep for `seconds`, then answer (for timeout tests)."""
        await asyncio.sleep(seconds)
        return f"slept {seconds}s"

    @mcp.tool()
    async def hang() -> str:
        """Never return (for timeout and cancellation tests)."""
        await asyncio.Event().wait()
        return "unreachable"

    return mcp


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    build(parser.parse_args().port).run(transport="sse")
