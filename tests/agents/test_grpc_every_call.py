"""Every call of pb.CoreRPC in protocol/core.proto is served (none left UNIMPLEMENTED but Send, which
says why), none answers UNKNOWN for an empty request, and each refuses a caller without credentials."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from protocol import core_pb2 as pb
from protocol import core_pb2_grpc as pb_grpc

pytestmark = pytest.mark.services

METHODS = list(pb.DESCRIPTOR.services_by_name["CoreRPC"].methods)


def _request(method: Any) -> Any:
    request = getattr(pb, method.input_type.name)()
    return iter([request]) if method.client_streaming else request


def _call(stub: pb_grpc.CoreRPCStub, method: Any, metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
    """A watch with nothing to report runs into its deadline: served all the same."""
    try:
        answer = getattr(stub, method.name)(_request(method), timeout=3, metadata=metadata)
        if method.server_streaming:
            next(answer, None)
            answer.cancel()
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[attr-defined, no-any-return]
    return grpc.StatusCode.OK


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_served_and_guarded(stub: pb_grpc.CoreRPCStub, admin_user: Any, method: Any) -> None:
    code = _call(stub, method, (("admin", "pw-admin-1"),))
    if method.name == "Send":
        assert code == grpc.StatusCode.UNIMPLEMENTED
    else:
        assert code not in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNKNOWN), method.name
    assert _call(stub, method, ()) == grpc.StatusCode.UNAUTHENTICATED, method.name
