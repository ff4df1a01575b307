"""Eru's gRPC protocol (service pb.CoreRPC): this project's own .proto, with only the messages it uses,
and the code generated from it. Ground floor: no Django, nothing of the project above it.

Filled by the node-agent and wire-compatibility issues."""
