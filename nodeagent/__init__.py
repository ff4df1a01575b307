"""The per-node agent daemon (Eru's eru-agent): heartbeats, container status and health, reported to the
core over gRPC. It runs on every node, where there is no database: it may import only the ground floor
(engine, protocol, schema), never Django, clusters or agents.

Built by the node-agent issue."""
