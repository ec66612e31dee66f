"""An in-process Kubernetes API server double, spoken to over real HTTP.

It is the one part of the world the tests replace (see ARCHITECTURE.md, Testing).
It implements what gastown and kopf use, with the semantics that matter to them:

- discovery (/api, /apis, /api/v1, /apis/G/V) for the resources registered;
- list with label selectors, watch streams from a resourceVersion, with bookmarks;
- get, create (201, 409 AlreadyExists, generateName), replace and patch (409 when the
  resourceVersion they carry is stale), delete with finalizers and deletionTimestamp;
- merge, strategic-merge (treated as a JSON merge) and JSON patches; a failing
  JSON-patch ``test`` answers 422 as the real server does;
- the status subresource: the main endpoint ignores status, /status ignores the rest;
- resourceVersion bumped on every write, generation bumped on spec changes, uid,
  creationTimestamp;
- owner references with background garbage collection of dependents on delete;
- RBAC refusals on demand: a (verb, group, resource) put in ``forbidden`` answers 403 with the
  real server's message until it is taken out again.

kmock (by kopf's author) covers part of this; its 0.8 gaps (no resourceVersion bumps,
no label selectors, 200 on create, no PUT) are exactly what the controllers rely on.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiohttp import web

from gastown.api import KINDS


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    subresources: frozenset[str] = frozenset()
    verbs: tuple[str, ...] = ("create", "delete", "get", "list", "patch", "update", "watch")

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


BUILTIN = [
    Resource("", "v1", "namespaces", "Namespace", namespaced=False),
    Resource("", "v1", "events", "Event"),
    Resource("", "v1", "pods", "Pod", subresources=frozenset({"status", "log"})),
    Resource("", "v1", "secrets", "Secret"),
    Resource("", "v1", "configmaps", "ConfigMap"),
    Resource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", subresources=frozenset({"status"})),
    Resource("", "v1", "serviceaccounts", "ServiceAccount"),
    Resource("", "v1", "resourcequotas", "ResourceQuota", subresources=frozenset({"status"})),
    Resource("batch", "v1", "jobs", "Job", subresources=frozenset({"status"})),
    Resource("batch", "v1", "cronjobs", "CronJob", subresources=frozenset({"status"})),
    Resource("coordination.k8s.io", "v1", "leases", "Lease"),
    Resource("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy"),
    Resource("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    Resource("events.k8s.io", "v1", "events", "Event"),
    Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition",
             namespaced=False),
    Resource("kopf.dev", "v1", "kopfpeerings", "KopfPeering"),
    Resource("kopf.dev", "v1", "clusterkopfpeerings", "ClusterKopfPeering", namespaced=False),
]
GASTOWN = [Resource(k.group, k.version, k.plural, k.kind, subresources=frozenset({"status"}))
           for k in KINDS]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: object, patch: object) -> object:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


class PatchTestFailed(Exception):
    pass


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]


def json_patch(doc: dict, ops: list[dict]) -> dict:
    """RFC 6902 JSON patch: add, remove, replace, test (what kopf and clients send)."""
    doc = copy.deepcopy(doc)
    for op in ops:
        parts = _pointer(op["path"])
        parent: object = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent.setdefault(p, {})
        last = parts[-1] if parts else None
        kind = op["op"]
        if kind == "test":
            cur: object = doc
            try:
                for p in parts:
                    cur = cur[int(p)] if isinstance(cur, list) else cur[p]
            except (KeyError, IndexError, ValueError):
                cur = None
            if cur != op.get("value"):
                raise PatchTestFailed(f"test failed at {op['path']}: {cur!r} != {op.get('value')!r}")
        elif kind in ("add", "replace"):
            if isinstance(parent, list):
                if last == "-":
                    parent.append(op["value"])
                elif kind == "add":
                    parent.insert(int(last), op["value"])
                else:
                    parent[int(last)] = op["value"]
            else:
                parent[last] = op["value"]
        elif kind == "remove":
            if isinstance(parent, list):
                del parent[int(last)]
            else:
                parent.pop(last, None)
        else:
            raise ValueError(f"unsupported JSON patch op {kind}")
    return doc


def selector_matches(selector: str | None, labels: dict[str, str]) -> bool:
    """Equality- and set-based label selectors: a=b, a==b, a!=b, a, !a, a in (x,y), a notin (x)."""
    if not selector:
        return True
    reqs, depth, cur = [], 0, ""
    for ch in selector:
        if ch == "," and depth == 0:
            reqs.append(cur.strip())
            cur = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur += ch
    reqs.append(cur.strip())
    for r in filter(None, reqs):
        if " notin " in r or " in " in r:
            neg = " notin " in r
            key, values = r.split(" notin " if neg else " in ", 1)
            options = {v.strip() for v in values.strip().strip("()").split(",")}
            has = labels.get(key.strip()) in options
            if has == neg:
                return False
        elif "!=" in r:
            k, v = r.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in r:
            k, v = r.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif r.startswith("!"):
            if r[1:].strip() in labels:
                return False
        elif r not in labels:
            return False
    return True


@dataclass
class WatchEvent:
    rv: int
    type: str
    resource: Resource
    obj: dict


@dataclass
class KubeAPI:
    """The server. Use :meth:`start` / :meth:`stop`, or the ``kubeapi`` pytest fixture."""

    resources: list[Resource] = field(default_factory=lambda: BUILTIN + GASTOWN)
    objects: dict[tuple, dict] = field(default_factory=dict)
    history: list[WatchEvent] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    logs: dict[tuple[str, str], str] = field(default_factory=dict)  # (namespace, pod) -> its container's log
    rv: int = 1000
    url: str = ""
    forbidden: set[tuple[str, str, str]] = field(default_factory=set)  # (verb, group, resource): 403
    # RBAC as the chart renders it with watchNamespaces: namespaced resources only in these (None: all)
    namespaces: set[str] | None = None

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> KubeAPI:
        ready = threading.Event()

        def serve() -> None:
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            self.changed = asyncio.Condition()
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._dispatch)
            self.runner = web.AppRunner(app, handle_signals=False)
            self.loop.run_until_complete(self.runner.setup())
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            self.loop.run_until_complete(site.start())
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.url = f"http://127.0.0.1:{port}"
            ready.set()
            self.loop.run_forever()
            self.loop.run_until_complete(self.runner.cleanup())
            self.loop.close()

        self.thread = threading.Thread(target=serve, name="kubeapi", daemon=True)
        self.thread.start()
        ready.wait(10)
        for ns in ("default", "kube-system"):
            self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            await self.runner.shutdown()
            self.loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop)
        self.thread.join(10)

    def call(self, fn, *args):
        """Run ``fn(*args)`` on the server's loop (the only place state changes)."""
        async def run():
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    # --- test helpers (thread-safe) ------------------------------------------------------

    def namespace(self, name: str) -> dict:
        return self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def resource(self, plural: str, group: str | None = None) -> Resource:
        for r in self.resources:
            if r.plural == plural and (group is None or r.group == group):
                return r
        raise KeyError(plural)

    def list(self, plural: str, namespace: str | None = None, group: str | None = None,
             selector: str | None = None) -> list[dict]:
        res = self.resource(plural, group)

        def pick():
            return [copy.deepcopy(o) for (r, ns, _), o in sorted(self.objects.items(), key=lambda kv: (kv[0][1] or "", kv[0][2]))
                    if r == res and (namespace is None or ns == namespace)
                    and selector_matches(selector, o["metadata"].get("labels") or {})]

        return self.call(pick)

    def get(self, plural: str, namespace: str | None, name: str, group: str | None = None) -> dict | None:
        res = self.resource(plural, group)
        return self.call(lambda: copy.deepcopy(self.objects.get((res, namespace if res.namespaced else None, name))))

    def create(self, obj: dict) -> dict:
        res = self._resource_for(obj)
        ns = obj["metadata"].get("namespace", "default") if res.namespaced else None
        return self.call(self._create, res, ns, copy.deepcopy(obj))

    def patch(self, plural: str, namespace: str | None, name: str, patch: dict,
              subresource: str | None = None, group: str | None = None) -> dict:
        res = self.resource(plural, group)
        return self.call(self._merge, res, namespace, name, patch, subresource)

    def delete(self, plural: str, namespace: str | None, name: str, group: str | None = None) -> None:
        res = self.resource(plural, group)
        self.call(self._delete, res, namespace, name)

    def events(self, namespace: str | None = None, involved: str | None = None) -> list[dict]:
        evs = self.list("events", namespace, group="")
        return [e for e in evs if involved is None or e.get("involvedObject", {}).get("name") == involved]

    def _resource_for(self, obj: dict) -> Resource:
        for r in self.resources:
            if r.api_version == obj["apiVersion"] and r.kind == obj["kind"]:
                return r
        raise KeyError(f"{obj['apiVersion']} {obj['kind']}")

    # --- storage (server loop only) -------------------------------------------------

    def _bump(self) -> str:
        self.rv += 1
        return str(self.rv)

    def _record(self, type_: str, res: Resource, obj: dict) -> None:
        self.history.append(WatchEvent(int(obj["metadata"]["resourceVersion"]), type_, res, copy.deepcopy(obj)))

        async def notify():
            async with self.changed:
                self.changed.notify_all()

        asyncio.ensure_future(notify())

    def _create(self, res: Resource, ns: str | None, obj: dict) -> dict:
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        key = (res, ns, meta.get("name"))
        if ns is not None and (self.resource("namespaces"), None, ns) not in self.objects:
            raise ApiError(404, "NotFound", f'namespaces "{ns}" not found')
        if not meta.get("name"):
            raise ApiError(422, "Invalid", "metadata.name: Required value")
        if key in self.objects:
            raise ApiError(409, "AlreadyExists", f'{res.plural} "{meta["name"]}" already exists')
        obj["apiVersion"], obj["kind"] = res.api_version, res.kind
        if ns is not None:
            meta["namespace"] = ns
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1,
                    resourceVersion=self._bump())
        if "status" in res.subresources:
            obj.pop("status", None)  # as the real server: status is set through /status only
        self.objects[key] = obj
        self._record("ADDED", res, obj)
        return obj

    def _store(self, res: Resource, key: tuple, new: dict, old: dict) -> dict:
        if (new.get("metadata", {}).get("deletionTimestamp") and not new["metadata"].get("finalizers")):
            del self.objects[key]
            new["metadata"]["resourceVersion"] = self._bump()
            self._record("DELETED", res, new)
            self._collect_garbage(new["metadata"]["uid"])
            return new
        if new == old:
            return new
        if new.get("spec") != old.get("spec"):
            new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
        new["metadata"]["resourceVersion"] = self._bump()
        self.objects[key] = new
        self._record("MODIFIED", res, new)
        return new

    def _existing(self, res: Resource, ns: str | None, name: str) -> tuple[tuple, dict]:
        key = (res, ns if res.namespaced else None, name)
        if key not in self.objects:
            raise ApiError(404, "NotFound", f'{res.plural} "{name}" not found')
        return key, self.objects[key]

    @staticmethod
    def _precondition(res: Resource, name: str, old: dict, sent: str | None) -> None:
        """A resourceVersion sent (in a PUT, a patch, a DELETE's preconditions) must be the object's."""
        if sent and sent != old["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {res.plural} "{name}": '
                                            "the object has been modified; please apply your changes "
                                            "to the latest version and try again")

    def _apply(self, res: Resource, ns: str | None, name: str, subresource: str | None,
               change) -> dict:
        key, old = self._existing(res, ns, name)
        new = change(copy.deepcopy(old))
        self._precondition(res, name, old, (new.get("metadata") or {}).get("resourceVersion"))
        protected = ("uid", "creationTimestamp", "generation", "namespace", "name")
        for k in protected:
            if k in old["metadata"]:
                new.setdefault("metadata", {})[k] = old["metadata"][k]
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        if "deletionTimestamp" in old["metadata"]:
            new["metadata"]["deletionTimestamp"] = old["metadata"]["deletionTimestamp"]
        if "status" in res.subresources:
            body = new if subresource == "status" else old
            new = {**(old if subresource == "status" else new)}
            new.pop("status", None)
            if "status" in body:
                new["status"] = body["status"]
        return self._store(res, key, new, old)

    def _merge(self, res, ns, name, patch, subresource):
        return self._apply(res, ns, name, subresource, lambda o: merge_patch(o, patch))

    def _delete(self, res: Resource, ns: str | None, name: str, precondition: str | None = None) -> dict:
        key, old = self._existing(res, ns, name)
        self._precondition(res, name, old, precondition)
        if old["metadata"].get("finalizers"):
            if old["metadata"].get("deletionTimestamp"):
                return old
            new = copy.deepcopy(old)
            new["metadata"]["deletionTimestamp"] = _now()
            new["metadata"]["resourceVersion"] = self._bump()
            self.objects[key] = new
            self._record("MODIFIED", res, new)
            return new
        del self.objects[key]
        old = copy.deepcopy(old)
        old["metadata"]["resourceVersion"] = self._bump()
        self._record("DELETED", res, old)
        self._collect_garbage(old["metadata"]["uid"])
        return old

    def _collect_garbage(self, owner_uid: str) -> None:
        """As the garbage collector: a dependent goes with its last owner; one that has another
        owner left only loses the reference to the one gone."""
        uids = {o["metadata"].get("uid") for o in self.objects.values()}
        for (res, ns, name), obj in list(self.objects.items()):
            owners = obj["metadata"].get("ownerReferences") or []
            if not any(o.get("uid") == owner_uid for o in owners) or (res, ns, name) not in self.objects:
                continue
            left = [o for o in owners if o.get("uid") != owner_uid and o.get("uid") in uids]
            if left:
                self._merge(res, ns, name, {"metadata": {"ownerReferences": left}}, None)
            else:
                self._delete(res, ns, name)

    # --- HTTP -------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        try:
            self._authorize(request.method, request.path_qs)
            return await self._route(request)
        except ApiError as e:
            return e.response()
        except PatchTestFailed as e:
            return ApiError(422, "Invalid", str(e)).response()
        except ConnectionResetError:  # the client went away mid-request (a killed operator): nobody to answer
            return web.Response(status=499)

    def verbs(self) -> set[tuple[str, str, str]]:
        """(verb, API group, resource or resource/subresource) of every API request served: what
        RBAC must allow. Discovery is left out (every authenticated client may read it)."""
        return {c[:3] for method, path_qs in list(self.requests) if (c := self._rbac_call(method, path_qs))}

    def _rbac_call(self, method: str, path_qs: str) -> tuple[str, str, str, str | None, str | None] | None:
        """(verb, group, resource, namespace, name) of a request, as RBAC sees it; None for discovery."""
        path, _, query = path_qs.partition("?")
        try:
            parsed = None if self._discovery(path) is not None else self._parse(path)
        except ApiError:
            return None
        if parsed is None:
            return None
        res, ns, name, sub = parsed
        watch = "watch=true" in query or "watch=1" in query
        verb = {"GET": "watch" if watch else "get" if name else "list", "POST": "create", "PUT": "update",
                "PATCH": "patch", "DELETE": "delete"}[method]
        return verb, res.group, f"{res.plural}/{sub}" if sub else res.plural, ns, name

    def _authorize(self, method: str, path_qs: str) -> None:
        call = self._rbac_call(method, path_qs)
        if call is None or (call[:3] not in self.forbidden and not self._outside(call)):
            return
        verb, group, resource, ns, name = call
        where = f' in the namespace "{ns}"' if ns else " at the cluster scope"
        subject = (f"{resource}.{group}" if group else resource) + (f' "{name}"' if name else "")
        raise ApiError(403, "Forbidden", f'{subject} is forbidden: User '
                                         f'"system:serviceaccount:gastown-system:gastown" cannot {verb} resource '
                                         f'"{resource}" in API group "{group}"{where}')

    def _outside(self, call: tuple) -> bool:
        """A namespaced resource outside the namespaces granted (a Role in each), or at the cluster scope."""
        verb, group, resource, ns, name = call
        namespaced = self.resource(resource.split("/")[0], group).namespaced
        return self.namespaces is not None and namespaced and ns not in self.namespaces

    def _parse(self, path: str) -> tuple[Resource, str | None, str | None, str | None] | None:
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["api"]:
            group, rest = "", parts[1:]
        elif parts[:1] == ["apis"]:
            group, rest = parts[1], parts[2:]
        else:
            return None
        if not rest:
            return None
        version, rest = rest[0], rest[1:]
        ns = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            ns, rest = rest[1], rest[2:]
        if not rest:
            return None
        plural, name, sub = rest[0], rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None
        for r in self.resources:
            if r.group == group and r.version == version and r.plural == plural:
                return r, ns, name, sub
        raise ApiError(404, "NotFound", f"the server could not find the requested resource {path}")

    async def _route(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        discovery = self._discovery(path)
        if discovery is not None:
            return web.json_response(discovery)
        parsed = self._parse(path)
        if parsed is None:
            raise ApiError(404, "NotFound", f"no route for {path}")
        res, ns, name, sub = parsed
        if ns is None and res.namespaced and request.method == "POST" and name is None:
            raise ApiError(405, "MethodNotAllowed", "create needs a namespace")
        m = request.method
        if name is None:
            if m == "GET" and request.query.get("watch") in ("true", "1"):
                return await self._watch(request, res, ns)
            if m == "GET":
                return web.json_response(self._list_body(res, ns, request.query.get("labelSelector")))
            if m == "POST":
                body = await request.json()
                body.setdefault("metadata", {})
                return web.json_response(self._create(res, ns if res.namespaced else None, body), status=201)
            raise ApiError(405, "MethodNotAllowed", m)
        if m == "GET" and sub == "log":  # pods/log: the text a test set in ``logs``, tailLines honoured
            self._existing(res, ns, name)
            lines = self.logs.get((ns or "", name), "").splitlines(keepends=True)
            tail = request.query.get("tailLines")
            return web.Response(text="".join(lines[-int(tail):] if tail else lines))
        if m == "GET":
            return web.json_response(copy.deepcopy(self._existing(res, ns, name)[1]))
        if m == "DELETE":
            options = await request.json() if request.can_read_body else {}
            obj = self._delete(res, ns, name, ((options or {}).get("preconditions") or {}).get("resourceVersion"))
            return web.json_response(obj)
        if m == "PUT":
            body = await request.json()
            return web.json_response(self._apply(res, ns, name, sub, lambda o: body))
        if m == "PATCH":
            body = await request.json()
            ctype = request.headers.get("Content-Type", "")
            if "json-patch" in ctype:
                return web.json_response(self._apply(res, ns, name, sub, lambda o: json_patch(o, body)))
            return web.json_response(self._merge(res, ns, name, body, sub))
        raise ApiError(405, "MethodNotAllowed", m)

    def _list_body(self, res: Resource, ns: str | None, selector: str | None) -> dict:
        items = [copy.deepcopy(o) for (r, ons, _), o in self.objects.items()
                 if r == res and (ns is None or ons == ns)
                 and selector_matches(selector, o["metadata"].get("labels") or {})]
        return {"apiVersion": res.api_version, "kind": f"{res.kind}List",
                "metadata": {"resourceVersion": str(self.rv)}, "items": items}

    async def _watch(self, request: web.Request, res: Resource, ns: str | None) -> web.StreamResponse:
        since = int(request.query.get("resourceVersion") or self.rv)
        selector = request.query.get("labelSelector")
        timeout = float(request.query.get("timeoutSeconds") or 300)
        bookmarks = request.query.get("allowWatchBookmarks") in ("true", "1")
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        deadline = asyncio.get_running_loop().time() + timeout
        cursor = 0
        try:
            while True:
                events = self.history[cursor:]
                cursor = len(self.history)
                for ev in events:
                    if ev.resource != res or ev.rv <= since:
                        continue
                    meta = ev.obj["metadata"]
                    if ns is not None and meta.get("namespace") != ns:
                        continue
                    if not selector_matches(selector, meta.get("labels") or {}):
                        continue
                    await resp.write(json.dumps({"type": ev.type, "object": ev.obj}).encode() + b"\n")
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                async with self.changed:
                    try:
                        await asyncio.wait_for(self.changed.wait(), timeout=min(left, 5))
                    except TimeoutError:
                        if bookmarks:
                            mark = {"type": "BOOKMARK", "object": {
                                "apiVersion": res.api_version, "kind": res.kind,
                                "metadata": {"resourceVersion": str(self.rv)}}}
                            await resp.write(json.dumps(mark).encode() + b"\n")
        except (ConnectionResetError, asyncio.CancelledError):
            return resp
        return resp

    def _discovery(self, path: str) -> dict | None:
        path = path.rstrip("/")
        if path == "/version":
            return {"major": "1", "minor": "31", "gitVersion": "v1.31.0-gastown-test-double"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"]}
        if path == "/apis":
            groups: dict[str, set[str]] = {}
            for r in self.resources:
                if r.group:
                    groups.setdefault(r.group, set()).add(r.version)
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in sorted(vs)],
                 "preferredVersion": {"groupVersion": f"{g}/{sorted(vs)[0]}", "version": sorted(vs)[0]}}
                for g, vs in sorted(groups.items())]}
        parts = [p for p in path.split("/") if p]
        if parts == ["api", "v1"]:
            gv = ("", "v1")
        elif len(parts) == 3 and parts[0] == "apis":
            gv = (parts[1], parts[2])
        else:
            return None
        listed = [r for r in self.resources if (r.group, r.version) == gv]
        if not listed:
            raise ApiError(404, "NotFound", f"no group version {path}")
        out = []
        for r in listed:
            out.append({"name": r.plural, "singularName": r.kind.lower(), "namespaced": r.namespaced,
                        "kind": r.kind, "verbs": list(r.verbs)})
            for sub in r.subresources:
                out.append({"name": f"{r.plural}/{sub}", "singularName": "", "namespaced": r.namespaced,
                            "kind": r.kind, "verbs": ["get", "patch", "update"]})
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": f"{gv[0]}/{gv[1]}" if gv[0] else "v1", "resources": out}


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def response(self) -> web.Response:
        return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                  "message": self.message, "reason": self.reason, "code": self.code},
                                 status=self.code)


def labels_of(objs: Iterable[dict]) -> list[dict]:
    return [o["metadata"].get("labels") or {} for o in objs]
