"""Check an object against a CRD's schema the way the API server would (for tests).

OpenAPI v3 keywords go through jsonschema; the Kubernetes extensions are checked here:
unknown fields (as `kubectl apply --validate=strict`), list-map key uniqueness, and
`x-kubernetes-validations` CEL rules, evaluated with cel-python.
"""

from __future__ import annotations

from typing import Any

import celpy
import jsonschema


def _walk(schema: dict, value: Any, path: str, errors: list[str]) -> None:
    if value is None:
        return
    for rule in schema.get("x-kubernetes-validations", []):
        env = celpy.Environment()
        program = env.program(env.compile(rule["rule"]))
        try:
            ok = program.evaluate({"self": celpy.json_to_cel(value)})
        except celpy.CELEvalError as e:  # the API server reports evaluation errors as invalid
            ok, rule = False, {**rule, "message": f"{rule.get('message', '')} ({e.args[0]})"}
        if not ok:
            errors.append(f"{path}: {rule.get('message', rule['rule'])}")
    if isinstance(value, dict):
        props = schema.get("properties")
        if props is not None and not schema.get("x-kubernetes-preserve-unknown-fields"):
            for key in value:
                if key not in props:
                    errors.append(f'{path}.{key}: unknown field "{key}"')
        for key, sub in (props or {}).items():
            _walk(sub, value.get(key), f"{path}.{key}", errors)
        if isinstance(schema.get("additionalProperties"), dict):
            for key, v in value.items():
                _walk(schema["additionalProperties"], v, f"{path}.{key}", errors)
    elif isinstance(value, list):
        if schema.get("x-kubernetes-list-type") == "map":
            keys = [tuple(item.get(k) for k in schema["x-kubernetes-list-map-keys"]) for item in value]
            for k in {k for k in keys if keys.count(k) > 1}:
                errors.append(f"{path}: Duplicate value: {k}")
        for i, item in enumerate(value):
            _walk(schema.get("items", {}), item, f"{path}[{i}]", errors)


def crd_errors(crd: dict, obj: dict) -> list[str]:
    """Everything the API server would refuse in ``obj`` (an empty list when it is accepted)."""
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    errors = [
        f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in jsonschema.Draft4Validator(schema).iter_errors(obj)
    ]
    _walk(schema, obj, "", errors)
    return [e.lstrip(".") for e in errors]
