"""The API's OpenAPI document: made without a warning, and valid OpenAPI 3.1."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from django.core.management import call_command


@pytest.mark.django_db
def test_the_openapi_document_is_valid_and_made_without_warnings(tmp_path: Path) -> None:
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    schema = yaml.safe_load(out.read_text())
    assert schema["openapi"].startswith("3.1")
    merged = schema["paths"]["/api/workloads/logs/"]["get"]
    assert merged["operationId"] == "workloads_logs_merged"
    assert "application/x-ndjson" in merged["responses"]["200"]["content"]
    assert schema["components"]["securitySchemes"]["tokenAuth"]["name"] == "Authorization"
