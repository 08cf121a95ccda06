"""Which apiserver refusals the writers treat as nothing to do (the body is the one kube-apiserver 1.37
returns for a create in a namespace that is being deleted)."""

from __future__ import annotations

import json

from kubernetes.client.exceptions import ApiException

from detection_operator.act.kube import _namespace_terminating

TERMINATING = {
    "kind": "Status",
    "apiVersion": "v1",
    "status": "Failure",
    "message": 'events "e1" is forbidden: unable to create new content in namespace gone because it is being '
    "terminated",
    "reason": "Forbidden",
    "details": {
        "name": "e1",
        "kind": "events",
        "causes": [
            {
                "reason": "NamespaceTerminating",
                "message": "namespace gone is being terminated",
                "field": "metadata.namespace",
            }
        ],
    },
    "code": 403,
}


def _refusal(status: int, body: object) -> ApiException:
    exc = ApiException(status=status, reason="Forbidden")
    exc.body = body if isinstance(body, str) or body is None else json.dumps(body)
    return exc


def test_a_create_in_a_terminating_namespace_is_recognised() -> None:
    assert _namespace_terminating(_refusal(403, TERMINATING))


def test_a_real_permission_refusal_is_not() -> None:
    rbac = {**TERMINATING, "message": 'events is forbidden: User "x" cannot create resource "events"'}
    rbac["details"] = {"kind": "events"}
    assert not _namespace_terminating(_refusal(403, rbac))
    assert not _namespace_terminating(_refusal(409, TERMINATING))
    assert not _namespace_terminating(_refusal(403, "not json"))
    assert not _namespace_terminating(_refusal(403, None))
    assert not _namespace_terminating(_refusal(403, ["a", "list"]))
