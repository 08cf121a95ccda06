import json

import pytest
from kubernetes.client.exceptions import ApiException

from detection_operator.act.kube import namespace_terminating


def _refusal(status: int, body: object) -> ApiException:
    exc = ApiException(status=status, reason="Forbidden")
    exc.body = body if isinstance(body, str) else json.dumps(body)
    return exc


# What kube-apiserver's NamespaceLifecycle admission answers for a create in a namespace being deleted.
TERMINATING = {
    "kind": "Status",
    "status": "Failure",
    "message": 'events "p.1" is forbidden: unable to create new content in namespace t-1 because it is being'
    " terminated",
    "reason": "Forbidden",
    "details": {
        "name": "p.1",
        "kind": "events",
        "causes": [
            {
                "reason": "NamespaceTerminating",
                "message": "namespace t-1 is being terminated",
                "field": "metadata.namespace",
            }
        ],
    },
    "code": 403,
}


def test_a_create_in_a_namespace_being_deleted_is_told_apart() -> None:
    assert namespace_terminating(_refusal(403, TERMINATING))


@pytest.mark.parametrize(
    ("status", "body"),
    [
        # RBAC's refusal: a real missing permission, which must still be reported.
        (403, {"kind": "Status", "reason": "Forbidden", "details": {"kind": "events"}, "code": 403}),
        (403, "not json"),
        (403, ["a", "list"]),
        (409, TERMINATING),
    ],
)
def test_other_refusals_are_not_a_terminating_namespace(status: int, body: object) -> None:
    assert not namespace_terminating(_refusal(status, body))
