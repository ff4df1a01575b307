"""The deploy request (and, later, Eru's spec file) described once, Django-free: fields, types, limits,
defaults. Ground floor: read by clusters (API, form, services), erucli, and later the gRPC mapping."""

from schema import spec
from schema.deploy import (
    APP_RE,
    ENTRY_DEFAULTS,
    MAX_CPU,
    MAX_DEPLOY_COUNT,
    MAX_NODES_LIMIT,
    MAX_SPEC_BYTES,
    NAME_RE,
    RESOURCE_FIELDS,
    STRATEGIES,
    DeployRequest,
    Entry,
    HealthCheck,
    Placement,
    Resources,
    clean_labels,
    container_fields,
    default_of,
    help_of,
)
from schema.errors import SchemaError
from schema.units import format_size, parse_size

__all__ = [
    "APP_RE",
    "ENTRY_DEFAULTS",
    "MAX_CPU",
    "MAX_DEPLOY_COUNT",
    "MAX_NODES_LIMIT",
    "MAX_SPEC_BYTES",
    "NAME_RE",
    "RESOURCE_FIELDS",
    "STRATEGIES",
    "DeployRequest",
    "Entry",
    "HealthCheck",
    "Placement",
    "Resources",
    "SchemaError",
    "clean_labels",
    "container_fields",
    "default_of",
    "format_size",
    "help_of",
    "spec",
    "parse_size",
]
