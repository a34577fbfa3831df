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
  An endpoint serving several routes (``routes``) is one handler for all of
  them, written by a person: an operation on any of its routes matches it and
  leaves it as it is (reported ``unchanged``), so an import never writes one
  operation's stub or description over a handler that serves others too.
* Validation comes first: an invalid spec, or a path the gateway cannot route
  (``/a{b}``, ``{pet-id}``), answers 400 before any endpoint is written.
* ``create_collection`` reuses the collection of the same name on the same domain
  (updating its ``base_path`` and description), so re-importing does not
  duplicate it either.
* Only local ``$ref`` (``#/...``) resolve: the validator is given no URL or
  file handlers, so a spec cannot make the gateway read files or fetch URLs.
  YAML aliases are refused (a few aliases can expand into gigabytes).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate
from email import message_from_bytes
from email.message import Message
from typing import IO, TYPE_CHECKING, Any, Generator, Optional, TypedDict, TypeVar, cast
from urllib.parse import parse_qs, unquote, urlsplit

import yaml
from referencing.exceptions import Unresolvable
from twisted.internet.defer import Deferred, DeferredLock, inlineCallbacks
from twisted.internet.threads import deferToThreadPool
from twisted.web.iweb import IRequest

from edgegw_tx.admin.bundles import Bundle, read_bundle
from edgegw_tx.admin.domains import CollectionManager, DomainManager, join_path
from edgegw_tx.admin.errors import ApiError, BadRequest, NotFound, PayloadTooLarge, Unprocessable
from edgegw_tx.admin.stubs import is_untouched_stub, stub_code
from edgegw_tx.admin.schema import HOST, IMPORT_OPENAPI, MAX_CODE, MAX_DESCRIPTION, MAX_NAME
from edgegw_tx.admin.validation import UNSAFE_IN_NAME, check_schema, routes_of, schema_errors
from edgegw_tx.paths import PatternError, parse_pattern
from edgegw_tx.store.interface import Record

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError
    from openapi_spec_validator.validation.validators import SpecValidator

    from edgegw_tx.admin.manager import EndpointManager

_T = TypeVar("_T")
# A parsed spec: the JSON value of its text (an object at the top).
Spec = dict[str, Any]
# What an import answers (created, updated, … endpoints): a JSON object.
Result = dict[str, Any]


class TargetOptions(TypedDict):
    """Where an import puts its endpoints: the domain, and the collection (named or created)."""

    domain: Optional[str]
    collection_id: Optional[str]
    create_collection: bool


class OpenAPIOptions(TargetOptions):
    """The checked body of ``POST /api/import/openapi``: the target and the spec's text."""

    spec: str


class BundleOptions(TargetOptions):
    """The checked query of ``POST /api/import/bundle``: the target, and whether to compile and start."""

    compile: bool
    start: bool


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


if TYPE_CHECKING:
    # For the checker: libyaml's loader has the same constructor and resolver.
    _LoaderBase = yaml.SafeLoader
else:
    # libyaml's loader when PyYAML was built with it (it parses about 10x faster).
    _LoaderBase = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _SpecLoader(_LoaderBase):
    """
    YAML 1.1 safe loading, less three surprises for a spec: dates stay
    strings, mapping keys are strings (``200:`` is the status ``"200"``), and
    aliases are refused (the same node constructed twice).
    """

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in _LoaderBase.yaml_implicit_resolvers.items()
    }

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """A node constructed twice is an alias (or a merge key): refused, it could expand without end."""
        if node in self.constructed_objects or node in self.recursive_objects:
            raise SpecError(
                "the spec uses YAML aliases or merge keys (*name, <<), which are not supported; "
                "use $ref instead",
                node.start_mark,
            )
        return super().construct_object(node, deep)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        """A mapping whose keys are strings, as JSON's are (``200:`` is ``"200"``)."""
        mapping = super().construct_mapping(node, deep)
        return {_key(k): v for k, v in mapping.items()}


def _key(key: object) -> str:
    """A YAML mapping key as JSON would write it."""
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    return key if isinstance(key, str) else str(key)


class SpecError(Exception):
    """The spec cannot be imported; ``message`` says why, ``path`` where (a JSON pointer)."""

    def __init__(self, message: str, mark: Optional[yaml.Mark] = None, path: Optional[str] = None) -> None:
        """``mark`` (where the YAML parser stopped) adds the line and column to ``message``."""
        if mark is not None:
            message += f" (line {mark.line + 1}, column {mark.column + 1})"
        super().__init__(message)
        self.message = message
        self.path = path


def _pointer(parts: Iterable[object]) -> str:
    """The JSON pointer (``#/a/b~1c``) of a path into the spec."""
    return "#/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _validator(base: type[SpecValidator]) -> type[SpecValidator]:
    """``base`` (one OpenAPI version's validator) that resolves only references inside the spec."""

    # A class made from whichever validator is given; the checker needs a static base.
    class Local(base):  # type: ignore[valid-type,misc]
        """The validator of one import: local references only, nothing cached."""

        # No handlers: no $ref may reach a URL or a file.
        resolver_handlers: dict[str, Any] = {}

        def iter_errors(self) -> Iterator[ValidationError]:
            """The spec's errors, first one first."""
            # The library's iter_errors is an lru_cache keyed by the validator,
            # which would keep every imported spec alive: the same steps, uncached.
            yield from self.schema_validator.iter_errors(self.schema)
            yield from self.root_validator(self.schema_path)

    return Local


@functools.cache
def _validators() -> dict[str, type[SpecValidator]]:
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


def check_nesting(text: str) -> None:
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


def _yaml(text: str) -> Any:
    """The YAML document of ``text``, refused first when it nests too deeply for libyaml."""
    check_nesting(text)
    return yaml.load(text, Loader=_SpecLoader)


def parse_text(text: str) -> Spec:
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


def validate_spec(spec: Spec) -> None:
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
    def key(self) -> str:
        """What the operation is known by: its operationId, else its generated name."""
        return self.operation_id or self.name


def _text(value: object) -> str:
    """Spec text fit for the store: a string, lone surrogates (valid JSON, not UTF-8) replaced."""
    if not isinstance(value, str):
        return ""
    return value.encode("utf-8", "replace").decode("utf-8")


def _slug(path: str) -> str:
    """A path as a name's part: ``/pets/{id}`` → ``pets_id``."""
    return re.sub(r"[^a-z0-9]+", "_", path.lower()).strip("_") or "root"


def _resolve(spec: Spec, item: Any) -> Any:
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


def operations(spec: Spec) -> list[Operation]:
    """The spec's operations in order; ``SpecError`` naming a path the gateway cannot route."""
    found: list[Operation] = []
    routes: dict[tuple[str, str], Operation] = {}
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


def load_spec(text: str) -> tuple[Spec, list[Operation]]:
    """Parse, validate and list the operations of spec ``text``: ``(spec, operations)``."""
    spec = parse_text(text)
    validate_spec(spec)
    return spec, operations(spec)


def base_path(spec: Spec) -> str:
    """The path of the first server URL (server variables at their defaults), no trailing ``/``."""
    servers = spec.get("servers")
    if not isinstance(servers, list) or not servers or not isinstance(servers[0], dict):
        return ""
    url = servers[0].get("url")
    if not isinstance(url, str):
        return ""
    variables = servers[0].get("variables") or {}

    def default(match: re.Match[str]) -> str:
        """A server variable's default, or nothing."""
        variable = variables.get(match.group(1))
        return str(variable.get("default", "")) if isinstance(variable, dict) else ""

    url = re.sub(r"\{([^{}]*)\}", default, url)
    path = urlsplit(url).path
    if path and not path.startswith("/"):
        path = "/" + path
    return _text(path).rstrip("/")


# matching bundle files to operations


def snake_case(name: str) -> str:
    """``getPetById`` → ``get_pet_by_id``; ``HTTPStatus`` → ``http_status``."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower()


def match_handlers(ops: Sequence[Operation], files: Mapping[str, bytes]) -> tuple[dict[str, str], list[str]]:
    """
    ``({operation key: file name}, [unmatched file names])``. A file matches
    by its stem, ``<operationId>.rs`` or ``<snake_case>.rs``, at the bundle's
    root or in ``handlers/``; the exact operationId before the snake case and
    ``handlers/`` before the root. Each file serves one operation at most.
    """
    taken: set[str] = set()
    matched: dict[str, str] = {}
    for op in ops:
        stems: list[str] = []
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


def _flag(value: str, name: str) -> bool:
    """A boolean query parameter: ``true``/``1``, ``false``/``0``/empty; 400 otherwise."""
    if value in ("true", "1"):
        return True
    if value in ("false", "0", ""):
        return False
    raise BadRequest(f"query parameter '{name}' must be true or false", field=name)


def _domain(value: object, name: str, where: str = "field") -> str:
    """A host to import into, normalised; 400 naming ``name`` when it is no host."""
    if not isinstance(value, str):
        raise BadRequest(f"{where} '{name}' must be a string", field=name)
    if schema_errors(HOST, value):
        raise BadRequest(f"{where} '{name}' {HOST['x-error']}", field=name)
    return value.strip().lower()


def openapi_options(payload: Any) -> OpenAPIOptions:
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
        """The schema's 400 about ``collection_id``, told as the conflict it is when both are sent."""
        if path == ["collection_id"] and payload.get("create_collection") is True and payload.get("collection_id"):
            raise BadRequest(
                "field 'create_collection' cannot be true when 'collection_id' names a collection",
                field="create_collection",
            )

    return refine


def bundle_options(request: IRequest) -> BundleOptions:
    """
    The query of ``POST /api/import/bundle``, read from the URI itself: Twisted
    merges multipart form fields into ``request.args``.
    """
    query = urlsplit(request.uri).query
    try:
        args = parse_qs(query.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise BadRequest("the query string is not UTF-8")
    options: BundleOptions = {
        "domain": None, "collection_id": None, "create_collection": False, "compile": False, "start": False
    }
    for name, values in args.items():
        if name not in BUNDLE_PARAMETERS:
            raise BadRequest(f"unknown query parameter '{name}'", field=name)
        value = values[-1]
        if name == "domain":
            options["domain"] = _domain(value, name, "query parameter") if value else None
        elif name == "collection_id":
            options["collection_id"] = value or None
        elif name == "create_collection":
            options["create_collection"] = _flag(value, name)
        elif name == "compile":
            options["compile"] = _flag(value, name)
        else:
            options["start"] = _flag(value, name)
    if options["create_collection"] and options["collection_id"]:
        raise BadRequest(
            "query parameter 'create_collection' cannot be true when 'collection_id' names a collection",
            field="create_collection",
        )
    return options


def _content_size(content: IO[bytes]) -> int:
    """The size of a request body, without reading it (the read position is kept)."""
    position = content.tell()
    content.seek(0, 2)
    size = content.tell()
    content.seek(position)
    return size


def form_field(body: bytes, content_type: str, name: str) -> list[bytes]:
    """The values of field ``name`` of a multipart/form-data ``body``; 400 when it is no such form."""
    head = b"MIME-Version: 1.0\r\nContent-Type: " + content_type.encode("latin-1") + b"\r\n\r\n"
    message = message_from_bytes(head + body)
    if not message.is_multipart():
        raise BadRequest("the body is not a multipart/form-data form with parts", field="bundle")
    # A multipart message's payload is the list of its parts; a part's decoded
    # payload is its bytes (None when the part is itself multipart).
    parts = cast("list[Message]", message.get_payload())
    return [
        cast(Optional[bytes], part.get_payload(decode=True)) or b""
        for part in parts
        if part.get_param("name", header="content-disposition") == name
    ]


def bundle_bytes(request: IRequest, limit: int) -> bytes:
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


def _spec_error(e: SpecError, field: str = "spec") -> BadRequest:
    """The 400 of a spec that cannot be imported, naming the request's field and the spec's path."""
    extra = {"field": field}
    if e.path:
        extra["path"] = e.path
    return BadRequest(e.message, **extra)


def _check_size(text: str, what: str) -> None:
    """413 for a spec longer than ``MAX_SPEC_CHARS``: parsing it would hold the thread too long."""
    if len(text) > MAX_SPEC_CHARS:
        raise PayloadTooLarge(f"{what} is longer than {MAX_SPEC_CHARS // (1024 * 1024)} MiB")


def _parse_spec(text: str) -> tuple[Spec, list[Operation]]:
    """The spec of ``POST /api/import/openapi`` and its operations (in a thread); 400 or 413 otherwise."""
    _check_size(text, "field 'spec'")
    try:
        return load_spec(text)
    except SpecError as e:
        raise _spec_error(e)


def _parse_bundle(data: bytes) -> tuple[Bundle, Spec, list[Operation]]:
    """The bundle, its spec and operations (in a thread); the 400 of a bad spec names its entry."""
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

    def __init__(
        self,
        manager: EndpointManager,
        domains: Optional[DomainManager] = None,
        collections: Optional[CollectionManager] = None,
        reactor: Any = None,
    ) -> None:
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

    def _in_thread(self, f: Callable[..., _T], *args: Any) -> Deferred[_T]:
        """``f(*args)`` in the reactor's thread pool: parsing is CPU work that grows with the spec."""
        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), f, *args)

    @inlineCallbacks
    def openapi(self, payload: Any) -> Generator[Deferred[Any], Any, Result]:
        """``POST /api/import/openapi`` with its JSON body."""
        options = openapi_options(payload)
        spec, ops = yield self._in_thread(_parse_spec, options["spec"])
        result: Result
        result, _ = yield self._lock.run(self._import, spec, ops, {}, options)
        return result

    @inlineCallbacks
    def bundle(self, data: bytes, options: BundleOptions) -> Generator[Deferred[Any], Any, Result]:
        """``POST /api/import/bundle`` with the zip's bytes and ``bundle_options``."""
        bundle: Bundle
        spec: Spec
        ops: list[Operation]
        bundle, spec, ops = yield self._in_thread(_parse_bundle, data)
        matched, unmatched = match_handlers(ops, bundle.handlers)
        errors: list[dict[str, str]] = []
        codes: dict[str, str] = {}
        for op in ops:
            name = matched.get(op.key)
            if name is None:
                continue
            problem: Optional[str]
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
        result: Result
        records: dict[str, Record]
        result, records = yield self._lock.run(self._import, spec, ops, codes, options)
        result.update(matched=matched, unmatched_files=unmatched, compiled=[], started=[], errors=errors)
        if options["compile"] or options["start"]:
            yield self._deploy(ops, matched, records, result, options["start"])
        return result

    # writing endpoints

    @inlineCallbacks
    def _import(
        self, spec: Spec, ops: Sequence[Operation], codes: Mapping[str, str], options: TargetOptions
    ) -> Generator[Deferred[Any], Any, tuple[Result, dict[str, Record]]]:
        """
        Create or update the endpoint of each operation (module docstring),
        under the import lock: ``(result, {operation key: record})``.
        """
        domain: str
        collection: Optional[Record]
        base: str
        domain, collection, base = yield self._target(spec, options)
        collection_id = collection["id"] if collection else None
        existing: list[Record] = yield self._manager.list()
        routes = {(r["domain"], route["method"], route["path_shape"]): r for r in existing for route in routes_of(r)}
        result: Result = {"created": [], "updated": [], "unchanged": [], "collection": collection_id, "endpoints": []}
        records: dict[str, Record] = {}
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
            elif len(routes_of(record)) > 1:
                result["unchanged"].append(record["name"])
            else:
                changes: dict[str, Any] = {}
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
        return (result, records)

    @inlineCallbacks
    def _deploy(
        self,
        ops: Sequence[Operation],
        matched: Mapping[str, str],
        records: Mapping[str, Record],
        result: Result,
        start: bool,
    ) -> Generator[Deferred[Any], Any, None]:
        """Compile each endpoint that got a bundle file, then start (or restart) those that compiled."""
        compiled: list[tuple[dict[str, str], Record]] = []
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
    def _target(
        self, spec: Spec, options: TargetOptions
    ) -> Generator[Deferred[Any], Any, tuple[str, Optional[Record], str]]:
        """
        ``(effective domain, collection record or None, its base path)``: the
        collection's domain wins when it has one (another ``domain`` is a 400);
        a host no domain record has yet gets one.
        """
        domain = options["domain"]
        collection: Optional[Record] = None
        if options["collection_id"] is not None:
            collection = yield self._collection(options["collection_id"])
            host: Optional[str] = yield self._host_of(collection)
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
        return (domain or "*", collection, base)

    def _need(self, manager: Optional[CollectionManager], field: str) -> CollectionManager:
        """The collections, or a 400 about ``field`` in a gateway built without them."""
        if manager is None:
            raise BadRequest(f"field '{field}': collections are not available in this gateway", field=field)
        return manager

    @inlineCallbacks
    def _collection(self, collection_id: str) -> Generator[Deferred[Any], Any, Record]:
        """The collection an import names; 400 (not 404: it is a field of the body) when there is none."""
        collections = self._need(self._collections, "collection_id")
        collection: Optional[Record]
        try:
            collection = yield collections.get(collection_id)
        except NotFound:
            collection = None
        if collection is None:
            raise BadRequest(
                f"field 'collection_id': no collection with id '{collection_id}'", field="collection_id"
            )
        return collection

    @inlineCallbacks
    def _host_of(self, collection: Record) -> Generator[Deferred[Any], Any, Optional[str]]:
        """The host of the collection's domain; None when it has none (it serves on every host)."""
        domain_id = collection.get("domain_id")
        if domain_id is None or self._domains is None:
            return None
        domain: Optional[Record]
        try:
            domain = yield self._domains.get(domain_id)
        except NotFound:
            domain = None
        return domain["host"] if domain else None

    @inlineCallbacks
    def _domain_record(self, host: str) -> Generator[Deferred[Any], Any, Optional[Record]]:
        """The domain record of ``host``, created when missing; None for ``*`` without one."""
        if self._domains is None:
            return None
        domain: Optional[Record] = yield self._domains.by_host(host)
        if domain is None and host != "*":
            domain = yield self._domains.create({"host": host})
        return domain

    @inlineCallbacks
    def _collection_for(self, spec: Spec, host: Optional[str]) -> Generator[Deferred[Any], Any, Record]:
        """The collection named after ``info.title`` on ``host``'s domain: found, updated or created."""
        collections = self._need(self._collections, "create_collection")
        domain_id = None
        if host is not None:
            domain: Optional[Record] = yield self._domain_record(host)
            domain_id = domain["id"] if domain else None
        info = spec.get("info") or {}
        name = _text(info.get("title")).strip()[:MAX_NAME] or "Imported API"
        summary = _text(info.get("summary") or info.get("description")).strip()[:1000]
        fields = {"base_path": base_path(spec), "description": summary}
        existing: list[Record] = yield collections.list(domain_id=domain_id)
        for collection in existing:
            if collection.get("domain_id") == domain_id and collection.get("name") == name:
                changes = {k: v for k, v in fields.items() if collection.get(k) != v}
                if changes:
                    collection = yield collections.update(collection["id"], changes)
                return collection
        payload = dict(fields, name=name)
        if domain_id is not None:
            payload["domain_id"] = domain_id
        created: Record = yield collections.create(payload)
        return created
