"""kube/forbidden.py: kopf's line for a refused request, said as the operator says a 403."""

from gastown.kube.forbidden import Forever, forbidden_line, rbac_request


def test_requests_are_named_as_rbac_names_them():
    assert rbac_request("GET", "http://h/apis/gastown.dev/v1alpha1/rigs?watch=true") == ("watch", "rigs.gastown.dev", None)
    assert rbac_request("GET", "http://h/apis/gastown.dev/v1alpha1/rigs") == ("list", "rigs.gastown.dev", None)
    assert rbac_request("POST", "http://h/api/v1/namespaces/a/serviceaccounts") == ("create", "serviceaccounts", "a")
    assert rbac_request("PATCH", "http://h/apis/gastown.dev/v1alpha1/namespaces/a/rigs/x/status") == (
        "patch", "rigs/status.gastown.dev", "a")


def test_kopfs_refusal_line_becomes_the_operators_and_others_stay():
    kopf = ("Request attempt #3 failed; will retry: GET http://h/api/v1/namespaces/a/pods?watch=true -> "
            "APIForbiddenError('pods is forbidden: User \"x\" cannot watch resource \"pods\"', {})")
    line = forbidden_line(kopf)
    assert line is not None and line.startswith("forbidden: the operator may not watch pods in namespace a;")
    assert "needs watch on pods in namespace a" in line and "Retrying in 4s" in line
    assert forbidden_line("Request attempt #3 failed; will retry: GET http://h/x -> TimeoutError()") is None


def test_kopf_retries_for_ever_by_the_engines_rule():
    first = iter(Forever())
    assert [next(first) for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert next(iter(Forever())) == 1  # each request starts again
