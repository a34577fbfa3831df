"""
Importing OpenAPI specs and bundles: one endpoint per operation.

``POST /api/import/openapi`` takes the spec's text; ``POST /api/import/bundle``
takes a zip with a spec and handler ``.rs`` files (``bundles.py`` reads it).
Both parse and validate in the reactor's thread pool: YAML parsing and schema
validation are CPU work that grows with the spec, and the body may be 64 MiB.

Decisions, so a re-import is predictable:

* An operation is the endpoint already serving the same effective route: the
  same (domain, method, shape of base_path + path) — the store's own uniqueness
  rule (admin/domains.py), so an import can never create a second endpoint for
  a route. Names are not unique and can change in the spec, so they are not
  used to match. The domain is the one the import targets (the collection's
  domain when it has one, else ``domain``, else ``*``; a host with no domain
  record gets one); an endpoint's ``path`` is the spec's path as written (a
  trailing ``/`` dropped), served under its collection's ``base_path``.
* A matched endpoint gets the operation's description and, when the import
  names a collection, that collection (with the spec's path, so its route
  stays the same). Its code is replaced by a fresh stub only
  while it still is an untouched stub (``stubs.is_untouched_stub``), never when
  a person changed it; a bundle's matched ``.rs`` file replaces it always (that
  is what the bundle is for). Its name, settings and enabled flag are left alone.
* Validation comes first: an invalid spec, or a path the gateway cannot route
  (``/a{b}``, ``{pet-id}``), answers 400 before any endpoint is written.
* ``create_collection`` reuses the collection of the same name on the same domain
  (updating its ``base_path`` and description), so re-importing does not
  duplicate it either.
* Only local ``$ref`` (``#/...``) resolve: the validator is given no URL or
  file handlers, so a spec cannot make the gateway read files or fetch URLs.
  YAML aliases are refused (a few aliases can expand into gigabytes).
"""

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate
from email import message_from_bytes
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml
from referencing.exceptions import Unresolvable
from twisted.internet.defer import DeferredLock, inlineCallbacks, returnValue
from twisted.internet.threads import deferToThreadPool

from edgegw_tx.admin.bundles import read_bundle
from edgegw_tx.admin.domains import join_path
from edgegw_tx.admin.errors import ApiError, BadRequest, NotFound, PayloadTooLarge, Unprocessable
from edgegw_tx.admin.stubs import is_untouched_stub, stub_code
from edgegw_tx.admin.schema import HOST, IMPORT_OPENAPI, MAX_CODE, MAX_DESCRIPTION, MAX_NAME
from edgegw_tx.admin.validation import UNSAFE_IN_NAME, check_schema, schema_errors
from edgegw_tx.paths import PatternError, parse_pattern

MAX_OPERATIONS = 1000
MAX_SPEC_CHARS = 16 * 1024 * 1024
MAX_FLOW_DEPTH = 256
MAX_BLOCK_COLUMNS = 1000
BUNDLE_PARAMETERS = ("domain", "collection_id", "create_collection", "compile", "start")
ZIP_TYPES = (
    "application/zip",
    "application/x-zip-compressed",
    "application/x-zip",
    "application/octet-stream",
)
# OpenAPI's operation keys the gateway can route, in the order they are listed.
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch")


# parsing and validating a spec (runs in a thread)


def _loader_base():
    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _SpecLoader(_loader_base()):
    """
    YAML 1.1 safe loading, less three surprises for a spec: dates stay
    strings, mapping keys are strings (``200:`` is the status ``"200"``), and
    aliases are refused (the same node constructed twice).
    """

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in _loader_base().yaml_implicit_resolvers.items()
    }

    def construct_object(self, node, deep=False):
        if node in self.constructed_objects or node in self.recursive_objects:
            raise SpecError(
                "the spec uses YAML aliases or merge keys (*name, <<), which are not supported; "
                "use $ref instead",
                node.start_mark,
            )
        return super().construct_object(node, deep)

    def construct_mapping(self, node, deep=False):
        mapping = super().construct_mapping(node, deep)
        return {_key(k): v for k, v in mapping.items()}


def _key(key):
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    return key if isinstance(key, str) else str(key)


class SpecError(Exception):
    """The spec cannot be imported; ``message`` says why, ``path`` where (a JSON pointer)."""

    def __init__(self, message, mark=None, path=None):
        if mark is not None:
            message += f" (line {mark.line + 1}, column {mark.column + 1})"
        super().__init__(message)
        self.message = message
        self.path = path


def _pointer(parts):
    return "#/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _validator(base):
    class Local(base):
        # No handlers: no $ref may reach a URL or a file.
        resolver_handlers = {}

        def iter_errors(self):
            # The library's iter_errors is an lru_cache keyed by the validator,
            # which would keep every imported spec alive: the same steps, uncached.
            yield from self.schema_validator.iter_errors(self.schema)
            yield from self.root_validator(self.schema_path)

    return Local


@functools.cache
def _validators():
    """
    The OpenAPI validators, imported on the first import of a spec: the
    library and what it pulls in (jsonschema, pydantic) weigh about 30 MB of
    RSS that a gateway which never imports a spec should not carry.
    """
    from openapi_spec_validator.validation import OpenAPIV30SpecValidator, OpenAPIV31SpecValidator

    return {"3.0": _validator(OpenAPIV30SpecValidator), "3.1": _validator(OpenAPIV31SpecValidator)}


_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_BRACKETS = re.compile(r"[\[\]{}]")
# A line starting with this many indentation or block indicator characters.
_DEEP_BLOCK = re.compile(r"^[ \t?:-]{%d}" % MAX_BLOCK_COLUMNS, re.MULTILINE)


def check_nesting(text):
    """
    ``SpecError`` when YAML ``text`` could nest deeper than libyaml handles
    safely: its composer recurses on the C stack (a few ten thousand levels
    crash the process) and its scanner is quadratic in the flow depth. Both
    bounds are conservative (brackets in strings count too): flow depth at
    most ``MAX_FLOW_DEPTH``; a block level needs a column more, so no line may
    start with ``MAX_BLOCK_COLUMNS`` characters of indentation or indicators.
    """
    if text.count("[") + text.count("{") > MAX_FLOW_DEPTH:
        depth = max(accumulate(map(_STEP.__getitem__, _BRACKETS.findall(text))), default=0)
        if depth > MAX_FLOW_DEPTH:
            raise SpecError(f"the spec nests brackets more than {MAX_FLOW_DEPTH} levels deep")
    if _DEEP_BLOCK.search(text):
        raise SpecError(f"the spec indents or nests a line more than {MAX_BLOCK_COLUMNS} columns deep")


def _yaml(text):
    check_nesting(text)
    return yaml.load(text, Loader=_SpecLoader)


def parse_text(text):
    """The spec text (JSON or YAML) as a dict; ``SpecError`` when it is neither, or not an object."""
    try:
        stripped = text.lstrip()
        if stripped.startswith("{"):
            try:
                document = json.loads(stripped)
            except ValueError as e:
                try:
                    document = _yaml(text)
                except (yaml.YAMLError, SpecError):
                    raise SpecError(f"the spec is not valid JSON: {e}")
        else:
            try:
                document = _yaml(text)
            except yaml.MarkedYAMLError as e:
                problem = e.problem or e.context or "syntax error"
                raise SpecError(f"the spec is not valid YAML: {problem}", e.problem_mark)
            except yaml.YAMLError as e:
                raise SpecError(f"the spec is not valid YAML: {e}")
    except RecursionError:
        raise SpecError("the spec is nested too deeply")
    if not isinstance(document, dict):
        raise SpecError("the spec must be a YAML or JSON object with an 'openapi' field")
    return document


def validate_spec(spec):
    """``SpecError`` with the validator's first error and its location, unless ``spec`` is valid 3.0 or 3.1."""
    version = spec.get("openapi")
    if not isinstance(version, str):
        if "swagger" in spec:
            raise SpecError("Swagger 2.0 specs are not supported: convert it to OpenAPI 3.0 or 3.1")
        raise SpecError("the spec has no 'openapi' version field (3.0.x or 3.1.x)", path="#/openapi")
    match = re.match(r"^3\.([01])\.\d+(-.+)?$", version)
    if not match:
        raise SpecError(
            f"OpenAPI version '{version[:50]}' is not supported: use 3.0.x or 3.1.x", path="#/openapi"
        )
    cls = _validators()["3." + match.group(1)]
    try:
        error = next(cls(spec).iter_errors(), None)
    except Unresolvable as e:
        ref = getattr(e, "ref", None) or str(e)
        raise SpecError(
            f"invalid OpenAPI spec: cannot resolve $ref '{str(ref)[:200]}': only references "
            "inside the spec (#/...) are supported"
        )
    except RecursionError:
        raise SpecError("invalid OpenAPI spec: its references or schemas nest too deeply")
    if error is not None:
        path = _pointer(error.absolute_path)
        # The first paragraph: some backends append the failing schema and instance.
        message = str(error.message).split("\n\n", 1)[0].strip()[:500]
        raise SpecError(f"invalid OpenAPI spec: {message} (at {path})", path=path)


@dataclass(frozen=True)
class Operation:
    """One routable operation of a spec."""

    method: str
    path: str
    operation_id: str
    name: str
    description: str

    @property
    def key(self):
        """What the operation is known by: its operationId, else its generated name."""
        return self.operation_id or self.name


def _text(value):
    """Spec text fit for the store: a string, lone surrogates (valid JSON, not UTF-8) replaced."""
    if not isinstance(value, str):
        return ""
    return value.encode("utf-8", "replace").decode("utf-8")


def _slug(path):
    return re.sub(r"[^a-z0-9]+", "_", path.lower()).strip("_") or "root"


def _resolve(spec, item):
    """A path item, following one local ``$ref`` (``#/components/pathItems/...``)."""
    ref = item.get("$ref") if isinstance(item, dict) else None
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return item
    node = spec
    for part in ref[2:].split("/"):
        part = unquote(part).replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return {}
        node = node[part]
    return node if isinstance(node, dict) else {}


def operations(spec):
    """The spec's operations in order; ``SpecError`` naming a path the gateway cannot route."""
    found = []
    routes = {}
    for raw_path, item in (spec.get("paths") or {}).items():
        item = _resolve(spec, item)
        if not isinstance(item, dict):
            continue
        path = raw_path.rstrip("/") or "/"
        methods = [m for m in item if m in _METHODS]
        if not methods:
            continue
        try:
            pattern = parse_pattern(path)
        except PatternError as e:
            raise SpecError(
                f"path '{_text(raw_path)[:200]}' cannot be routed by the gateway: {e}",
                path=_pointer(["paths", raw_path]),
            )
        for method in methods:
            operation = item[method] if isinstance(item[method], dict) else {}
            operation_id = _text(operation.get("operationId")).strip()
            # An operationId may hold what an endpoint name may not (validation.endpoint_name).
            name = UNSAFE_IN_NAME.sub("_", operation_id or f"{method}_{_slug(path)}")[:MAX_NAME]
            if name in (".", ".."):
                name = f"{method}_{_slug(path)}"[:MAX_NAME]
            summary = _text(operation.get("summary")).strip()
            details = _text(operation.get("description")).strip()
            description = "\n\n".join(x for x in (summary, details) if x)[:MAX_DESCRIPTION]
            op = Operation(method.upper(), pattern.text, operation_id, name, description)
            route = (op.method, pattern.shape)
            if route in routes:
                raise SpecError(
                    f"operations '{routes[route].key}' and '{op.key}' both route "
                    f"{op.method} {op.path}",
                    path=_pointer(["paths", raw_path, method]),
                )
            routes[route] = op
            found.append(op)
            if len(found) > MAX_OPERATIONS:
                raise SpecError(f"the spec has more than {MAX_OPERATIONS} operations")
    return found


def load_spec(text):
    """Parse, validate and list the operations of spec ``text``: ``(spec, operations)``."""
    spec = parse_text(text)
    validate_spec(spec)
    return spec, operations(spec)


def base_path(spec):
    """The path of the first server URL (server variables at their defaults), no trailing ``/``."""
    servers = spec.get("servers")
    if not isinstance(servers, list) or not servers or not isinstance(servers[0], dict):
        return ""
    url = servers[0].get("url")
    if not isinstance(url, str):
        return ""
    variables = servers[0].get("variables") or {}

    def default(match):
        variable = variables.get(match.group(1))
        return str(variable.get("default", "")) if isinstance(variable, dict) else ""

    url = re.sub(r"\{([^{}]*)\}", default, url)
    path = urlsplit(url).path
    if path and not path.startswith("/"):
        path = "/" + path
    return _text(path).rstrip("/")


# matching bundle files to operations


def snake_case(name):
    """``getPetById`` → ``get_pet_by_id``; ``HTTPStatus`` → ``http_status``."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower()


def match_handlers(ops, files):
    """
    ``({operation key: file name}, [unmatched file names])``. A file matches
    by its stem, ``<operationId>.rs`` or ``<snake_case>.rs``, at the bundle's
    root or in ``handlers/``; the exact operationId before the snake case and
    ``handlers/`` before the root. Each file serves one operation at most.
    """
    taken = set()
    matched = {}
    for op in ops:
        stems = []
        for stem in (op.key, snake_case(op.key)):
            if stem and stem not in stems:
                stems.append(stem)
        candidates = [f"handlers/{s}.rs" for s in stems] + [f"{s}.rs" for s in stems]
        for name in candidates:
            if name in files and name not in taken:
                matched[op.key] = name
                taken.add(name)
                break
    unmatched = sorted(name for name in files if name not in taken)
    return matched, unmatched


# the request side


def _flag(value, name):
    if value in ("true", "1"):
        return True
    if value in ("false", "0", ""):
        return False
    raise BadRequest(f"query parameter '{name}' must be true or false", field=name)


def _domain(value, name, where="field"):
    if not isinstance(value, str):
        raise BadRequest(f"{where} '{name}' must be a string", field=name)
    if schema_errors(HOST, value):
        raise BadRequest(f"{where} '{name}' {HOST['x-error']}", field=name)
    return value.strip().lower()


def openapi_options(payload):
    """The checked body of ``POST /api/import/openapi``."""
    if not isinstance(payload, dict):
        raise BadRequest("the request body must be a JSON object with a 'spec' field")
    check_schema(IMPORT_OPENAPI, payload, _collection_or_create(payload))
    domain = payload.get("domain")
    return {
        "spec": payload["spec"],
        "domain": None if domain is None else domain.strip().lower(),
        "collection_id": payload.get("collection_id"),
        "create_collection": payload.get("create_collection", False),
    }


def _collection_or_create(payload: dict[str, Any]) -> Callable[[list[object]], None]:
    """For ``check_schema``: a collection_id with create_collection true is a 400 about the latter."""

    def refine(path: list[object]) -> None:
        if path == ["collection_id"] and payload.get("create_collection") is True and payload.get("collection_id"):
            raise BadRequest(
                "field 'create_collection' cannot be true when 'collection_id' names a collection",
                field="create_collection",
            )

    return refine


def bundle_options(request):
    """
    The query of ``POST /api/import/bundle``, read from the URI itself: Twisted
    merges multipart form fields into ``request.args``.
    """
    query = urlsplit(request.uri).query
    try:
        args = parse_qs(query.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise BadRequest("the query string is not UTF-8")
    options = {"domain": None, "collection_id": None, "create_collection": False, "compile": False, "start": False}
    for name, values in args.items():
        if name not in BUNDLE_PARAMETERS:
            raise BadRequest(f"unknown query parameter '{name}'", field=name)
        value = values[-1]
        if name == "domain":
            options["domain"] = _domain(value, name, "query parameter") if value else None
        elif name == "collection_id":
            options["collection_id"] = value or None
        else:
            options[name] = _flag(value, name)
    if options["create_collection"] and options["collection_id"]:
        raise BadRequest(
            "query parameter 'create_collection' cannot be true when 'collection_id' names a collection",
            field="create_collection",
        )
    return options


def _content_size(content):
    position = content.tell()
    content.seek(0, 2)
    size = content.tell()
    content.seek(position)
    return size


def form_field(body, content_type, name):
    """The values of field ``name`` of a multipart/form-data ``body``; 400 when it is no such form."""
    head = b"MIME-Version: 1.0\r\nContent-Type: " + content_type.encode("latin-1") + b"\r\n\r\n"
    message = message_from_bytes(head + body)
    if not message.is_multipart():
        raise BadRequest("the body is not a multipart/form-data form with parts", field="bundle")
    return [
        part.get_payload(decode=True) or b""
        for part in message.get_payload()
        if part.get_param("name", header="content-disposition") == name
    ]


def bundle_bytes(request, limit):
    """
    The zip of ``POST /api/import/bundle``: the multipart form field ``bundle``,
    or the raw body. The form is read here, not by Twisted (the admin site
    does not parse bodies: Twisted answers a malformed form with a bare 400
    before any route runs), so a bad one answers the API's 400.
    """
    if _content_size(request.content) > limit:
        raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
    content_type = (request.getHeader(b"content-type") or b"").decode("latin-1")
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "multipart/form-data":
        request.content.seek(0)
        parts = form_field(request.content.read(), content_type, "bundle")
        if not parts:
            raise BadRequest("the multipart form has no field 'bundle'", field="bundle")
        if len(parts) > 1:
            raise BadRequest("the multipart form has more than one field 'bundle'", field="bundle")
        data = parts[0]
    elif media in ZIP_TYPES or not media:
        request.content.seek(0)
        data = request.content.read(limit + 1)
    else:
        raise BadRequest(
            f"cannot import a body of type '{media[:100]}': send the zip as multipart/form-data "
            "field 'bundle', or as the raw body with Content-Type application/zip"
        )
    if len(data) > limit:
        raise PayloadTooLarge(f"the bundle is larger than {limit} bytes")
    if not data:
        raise BadRequest("the request body is empty; send a zip archive")
    return data


def _spec_error(e, field="spec"):
    extra = {"field": field}
    if e.path:
        extra["path"] = e.path
    return BadRequest(e.message, **extra)


def _check_size(text, what):
    if len(text) > MAX_SPEC_CHARS:
        raise PayloadTooLarge(f"{what} is longer than {MAX_SPEC_CHARS // (1024 * 1024)} MiB")


def _parse_spec(text):
    _check_size(text, "field 'spec'")
    try:
        return load_spec(text)
    except SpecError as e:
        raise _spec_error(e)


def _parse_bundle(data):
    bundle = read_bundle(data)
    _check_size(bundle.spec_text, f"the spec '{bundle.spec_name}'")
    try:
        spec, ops = load_spec(bundle.spec_text)
    except SpecError as e:
        error = _spec_error(e, field="bundle")
        error.message = f"{bundle.spec_name}: {error.message}"
        error.extra["entry"] = bundle.spec_name
        raise error
    return bundle, spec, ops


class Importer:
    """Turns specs and bundles into endpoints through the ``EndpointManager``."""

    def __init__(self, manager, domains=None, collections=None, reactor=None):
        """
        ``domains`` (``DomainManager``) and ``collections`` (``CollectionManager``)
        are needed only by imports that name a collection or create one.
        """
        if reactor is None:
            from twisted.internet import reactor
        self._manager = manager
        self._domains = domains
        self._collections = collections
        self._reactor = reactor
        # One import writes at a time: two re-imports of one spec cannot both create.
        self._lock = DeferredLock()

    def _in_thread(self, f, *args):
        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), f, *args)

    @inlineCallbacks
    def openapi(self, payload):
        """``POST /api/import/openapi`` with its JSON body."""
        options = openapi_options(payload)
        spec, ops = yield self._in_thread(_parse_spec, options["spec"])
        result, _ = yield self._lock.run(self._import, spec, ops, {}, options)
        returnValue(result)

    @inlineCallbacks
    def bundle(self, data, options):
        """``POST /api/import/bundle`` with the zip's bytes and ``bundle_options``."""
        bundle, spec, ops = yield self._in_thread(_parse_bundle, data)
        matched, unmatched = match_handlers(ops, bundle.handlers)
        errors = []
        codes = {}
        for op in ops:
            name = matched.get(op.key)
            if name is None:
                continue
            try:
                code = bundle.handlers[name].decode("utf-8-sig")
            except UnicodeDecodeError as e:
                problem = f"not UTF-8 text: {e}"
            else:
                problem = f"longer than {MAX_CODE} characters" if len(code) > MAX_CODE else None
            if problem:
                del matched[op.key]
                errors.append({"operation": op.key, "file": name, "stage": "read", "message": f"{name} is {problem}"})
            else:
                codes[op.key] = code
        result, records = yield self._lock.run(self._import, spec, ops, codes, options)
        result.update(matched=matched, unmatched_files=unmatched, compiled=[], started=[], errors=errors)
        if options["compile"] or options["start"]:
            yield self._deploy(ops, matched, records, result, options["start"])
        returnValue(result)

    # writing endpoints

    @inlineCallbacks
    def _import(self, spec, ops, codes, options):
        domain, collection, base = yield self._target(spec, options)
        collection_id = collection["id"] if collection else None
        existing = yield self._manager.list()
        routes = {(r["domain"], r["method"], r["path_shape"]): r for r in existing}
        result = {"created": [], "updated": [], "unchanged": [], "collection": collection_id, "endpoints": []}
        records = {}
        for op in ops:
            shape = parse_pattern(join_path(base, op.path)).shape
            record = routes.get((domain, op.method, shape))
            code = codes.get(op.key)
            if record is None:
                payload = {
                    "name": op.name,
                    "path": op.path,
                    "method": op.method,
                    "domain": domain,
                    "description": op.description,
                    "code": code if code is not None else stub_code(op.key, op.method, op.path),
                    "collection_id": collection_id,
                }
                record = yield self._manager.create(payload)
                result["created"].append(record["name"])
            else:
                changes = {}
                if record["description"] != op.description:
                    changes["description"] = op.description
                if code is None and is_untouched_stub(record["code"]):
                    code = stub_code(op.key, op.method, op.path)
                if code is not None and code != record["code"]:
                    changes["code"] = code
                if collection_id is not None and record["collection_id"] != collection_id:
                    # Into the import's collection, at the same effective route.
                    changes["collection_id"] = collection_id
                    if record["path"] != op.path:
                        changes["path"] = op.path
                if changes:
                    record = yield self._manager.update(record["id"], changes)
                    result["updated"].append(record["name"])
                else:
                    result["unchanged"].append(record["name"])
            records[op.key] = record
            result["endpoints"].append(
                {"id": record["id"], "name": record["name"], "method": record["method"], "path": record["path"]}
            )
        returnValue((result, records))

    @inlineCallbacks
    def _deploy(self, ops, matched, records, result, start):
        """Compile each endpoint that got a bundle file, then start (or restart) those that compiled."""
        compiled = []
        for op in ops:
            name = matched.get(op.key)
            if name is None:
                continue
            record = records[op.key]
            where = {"operation": op.key, "file": name, "endpoint_id": record["id"]}
            try:
                record, _ = yield self._manager.compile(record["id"])
            except Unprocessable as e:
                result["errors"].append(
                    dict(where, stage="compile", message=e.message, diagnostics=e.extra.get("diagnostics", []))
                )
                continue
            except ApiError as e:
                result["errors"].append(dict(where, stage="compile", message=e.message, diagnostics=[]))
                continue
            result["compiled"].append(record["name"])
            compiled.append((where, record))
        if not start:
            return
        for where, record in compiled:
            # A running endpoint keeps its old binary on start: restart swaps it.
            change = self._manager.restart if record["status"] == "running" else self._manager.start
            try:
                record = yield change(record["id"])
            except ApiError as e:
                result["errors"].append(dict(where, stage="start", message=e.message, diagnostics=[]))
                continue
            result["started"].append(record["name"])

    # where the endpoints go

    @inlineCallbacks
    def _target(self, spec, options):
        """
        ``(effective domain, collection record or None, its base path)``: the
        collection's domain wins when it has one (another ``domain`` is a 400);
        a host no domain record has yet gets one.
        """
        domain = options["domain"]
        collection = None
        if options["collection_id"] is not None:
            collection = yield self._collection(options["collection_id"])
            host = yield self._host_of(collection)
            if host is not None:
                if domain is not None and domain != host:
                    raise BadRequest(
                        f"field 'domain' is '{domain}' but collection '{collection['name']}' "
                        f"serves on '{host}'; leave 'domain' out or send '{host}'",
                        field="domain",
                    )
                domain = host
        if domain is not None:
            yield self._domain_record(domain)
        if options["create_collection"]:
            collection = yield self._collection_for(spec, domain)
        base = collection.get("base_path") or "" if collection else ""
        returnValue((domain or "*", collection, base))

    def _need(self, manager, field):
        if manager is None:
            raise BadRequest(f"field '{field}': collections are not available in this gateway", field=field)
        return manager

    @inlineCallbacks
    def _collection(self, collection_id):
        collections = self._need(self._collections, "collection_id")
        try:
            collection = yield collections.get(collection_id)
        except NotFound:
            collection = None
        if collection is None:
            raise BadRequest(
                f"field 'collection_id': no collection with id '{collection_id}'", field="collection_id"
            )
        returnValue(collection)

    @inlineCallbacks
    def _host_of(self, collection):
        domain_id = collection.get("domain_id")
        if domain_id is None or self._domains is None:
            returnValue(None)
        try:
            domain = yield self._domains.get(domain_id)
        except NotFound:
            domain = None
        returnValue(domain["host"] if domain else None)

    @inlineCallbacks
    def _domain_record(self, host):
        """The domain record of ``host``, created when missing; None for ``*`` without one."""
        if self._domains is None:
            returnValue(None)
        domain = yield self._domains.by_host(host)
        if domain is None and host != "*":
            domain = yield self._domains.create({"host": host})
        returnValue(domain)

    @inlineCallbacks
    def _collection_for(self, spec, host):
        """The collection named after ``info.title`` on ``host``'s domain: found, updated or created."""
        collections = self._need(self._collections, "create_collection")
        domain_id = None
        if host is not None:
            domain = yield self._domain_record(host)
            domain_id = domain["id"] if domain else None
        info = spec.get("info") or {}
        name = _text(info.get("title")).strip()[:MAX_NAME] or "Imported API"
        summary = _text(info.get("summary") or info.get("description")).strip()[:1000]
        fields = {"base_path": base_path(spec), "description": summary}
        existing = yield collections.list(domain_id=domain_id)
        for collection in existing:
            if collection.get("domain_id") == domain_id and collection.get("name") == name:
                changes = {k: v for k, v in fields.items() if collection.get(k) != v}
                if changes:
                    collection = yield collections.update(collection["id"], changes)
                returnValue(collection)
        payload = dict(fields, name=name)
        if domain_id is not None:
            payload["domain_id"] = domain_id
        collection = yield collections.create(payload)
        returnValue(collection)
