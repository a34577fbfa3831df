"""
The OpenAPI 3.1 document of the management API, served at ``GET /api/openapi.json``.

Built once, at import: the operations are written here, every body's schema
comes from ``admin/schema.py``, the one place its limits and patterns are
written (and from which the server's checks come), so the document cannot
drift from the checks.
``tests/test_openapi.py`` validates it with openapi-spec-validator, checks that
it has exactly one operation per route, and runs schemathesis against a live
gateway with it, so an answer the document does not describe fails the suite.

What the document promises, beyond the shapes:

* every answer is the envelope ``{"ok": true, "data": ...}`` or
  ``{"ok": false, "error": "...", ...}`` (``Error``, whose other fields are
  all listed), except ``/api/openapi.json`` itself, which is the bare document
  so that tools can read it;
* request bodies are described as the server checks them: required fields,
  strict types, ranges, patterns, and ``additionalProperties: false`` wherever
  an unknown field is a 400 (the read-only fields of a record are accepted and
  ignored, so a record read with GET can be PUT back). What a schema cannot
  know is said in the descriptions: that a referenced domain or collection
  exists, that a service's new config is of its type, that a spec is valid;
* every status a handler can answer is listed: 401 and 429 on every call that
  needs a key, 403 on every call but a GET (a ``read`` key), 400 and 413 on
  every call with a body, 404 wherever an id is in the path. 405 (a known path
  with a method it does not have, with ``Allow``) and 500 (a bug) belong to no
  operation and are not listed, nor is the 503 of a store that cannot be
  reached (any call, ``Retry-After: 5``; said in the ``Unavailable`` answer);
* the PUT and DELETE of one record take ``If-Match`` (400 when malformed, 412
  when the record changed since), and every answer of one record that has a
  revision carries it as ``ETag``.
"""

import json
from collections.abc import Iterable

from edgegw_tx import __version__
from edgegw_tx.admin import history as _history
from edgegw_tx.admin.limits import IMPORT_MAX_BODY, MAX_BODY
from edgegw_tx.admin.schema import (
    Schema,
    BOOLEAN,
    HOST,
    ID,
    IMPORT_OPENAPI,
    IMPORTED,
    IMPORTED_BUNDLE,
    KEY_PROPERTIES,
    MASK,
    NEW_KEY,
    array,
    COLLECTION_CREATE,
    COLLECTION_UPDATE,
    CONSUMER_CREATE,
    CONSUMER_UPDATE,
    DOMAIN_CREATE,
    DOMAIN_UPDATE,
    envelope,
    integer,
    map_of,
    obj,
    page_of,
    record,
    ref,
    revised,
    schemas,
    string,
)


# An empty query parameter (``?page=``) is taken as absent.
EMPTY = string(max_length=0)


def flag_parameter(name: str, description: str) -> Schema:
    """A ``true``/``false`` query parameter (empty: absent); anything else is a 400."""
    return {
        "name": name,
        "in": "query",
        "description": description,
        "schema": string(enum=["true", "false", ""]),
    }


def query_parameter(name: str, description: str | None = None, schema: Schema | None = None) -> Schema:
    """A query parameter (a string unless ``schema`` says otherwise)."""
    parameter: Schema = {"name": name, "in": "query", "schema": schema or string()}
    if description:
        parameter["description"] = description
    return parameter


QUERY_PAGE = [
    query_parameter("page", "1 and up (empty: 1)", {"anyOf": [integer(1, default=1), EMPTY]}),
    query_parameter("limit", "items per page (empty: 100)", {"anyOf": [integer(1, default=100), EMPTY]}),
]



_FLAG_VALUES = string(enum=["true", "false", "1", "0", ""])


def bundle_query() -> list[Schema]:
    """The query of an import bundle call; any other parameter is a 400."""
    return [
        query_parameter("domain", "the host to serve on (empty: *)", {"anyOf": [HOST, EMPTY]}),
        query_parameter("collection_id", "a collection's id"),
        query_parameter("create_collection", "true: make (or reuse) a collection named after info.title", _FLAG_VALUES),
        query_parameter("compile", "compile the endpoints that got a .rs file", _FLAG_VALUES),
        query_parameter("start", "compile, then start them", _FLAG_VALUES),
    ]


ZIP = string(contentMediaType="application/zip", description="a zip archive")
BUNDLE_CONTENT = {
    "multipart/form-data": {
        "schema": obj({"bundle": ZIP}, required=("bundle",)),
        "encoding": {"bundle": {"contentType": "application/zip"}},
    },
    **{
        media: {"schema": ZIP}
        for media in ("application/zip", "application/x-zip-compressed", "application/x-zip", "application/octet-stream")
    },
}



def json_content(schema: Schema) -> Schema:
    """A JSON body of ``schema``."""
    return {"application/json": {"schema": schema}}


def answer(
    description: str, data: Schema, links: dict[str, tuple[str, dict[str, str]]] | None = None
) -> Schema:
    """A success answer; ``links`` maps a link name to (operationId, {parameter: expression})."""
    response: Schema = {"description": description, "content": json_content(envelope(data))}
    if links:
        response["links"] = {
            name: {"operationId": operation_id, "parameters": parameters}
            for name, (operation_id, parameters) in links.items()
        }
    return response


def links_to(operation_ids: Iterable[str], **parameters: str) -> dict[str, tuple[str, dict[str, str]]]:
    """Links to each of ``operation_ids`` with the same parameters, named after them."""
    return {operation_id: (operation_id, parameters) for operation_id in operation_ids}


# Error answers: status -> (components/responses name, what it means).
ERRORS = {
    400: ("BadRequest", "bad input: not JSON, a missing, mistyped or unknown field (named in `field`)"),
    401: ("Unauthorized", "no `Authorization: Bearer <key>`, another scheme, or a key that is not known"),
    403: ("Forbidden", "a `read` key used for anything but GET, or a browser request from another site (`Sec-Fetch-Site`, `Origin`) that would change something"),
    404: ("NotFound", "no such record"),
    409: ("Conflict", "the change conflicts with the current state"),
    412: (
        "PreconditionFailed",
        "the `If-Match` no longer matches: someone else changed the record first; `revision` is its revision "
        "now (GET it again, then retry with its ETag)",
    ),
    413: ("PayloadTooLarge", "the body, or an uploaded bundle once inflated, is over its cap"),
    422: ("CompileFailed", "the code did not compile; `diagnostics` says why"),
    429: ("TooManyRequests", "too many failed authentications from this address; the key is not looked at"),
    502: ("BadGateway", "the upstream failed: workers that died before they were ready, or a backend"),
    503: (
        "Unavailable",
        "the build plane cannot run (no cargo, no SDK); or, with `Retry-After: 1`, the gateway is still "
        "starting (any call); or, with `Retry-After: 5`, the store (its database) cannot be reached, "
        "named in `error` (any call that reads or writes it; the data plane keeps serving)",
    ),
    504: ("GatewayTimeout", "the upstream did not answer in time (a test request's `timeout`)"),
}

# Headers that come with an error status.
ERROR_HEADERS = {
    401: {"WWW-Authenticate": {"schema": string(), "description": 'Bearer realm="edgegw"'}},
    429: {
        "Retry-After": {
            "required": True,
            "schema": string(pattern="^[1-9][0-9]*$"),
            "description": "whole seconds",
        }
    },
    503: {"Retry-After": {"schema": string(pattern="^[1-9][0-9]*$"), "description": "whole seconds, when retrying may help"}},
}

# A record's ETag, ``"<revision>"``: what an If-Match sends back.
ETAG_HEADER = {
    "ETag": {
        "schema": string(pattern='^"(0|[1-9][0-9]*)"$'),
        "description": 'the record\'s revision, quoted (`"3"`): send it as If-Match to change the record '
        "only if nobody else did first",
    }
}

# A conditional PUT or DELETE.
IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "description": (
        'the ETag of the record as last read (`"3"`, or weak `W/"3"`, or bare `3`): the change is made only if the '
        "record is still at that revision, else 412. `*` or no If-Match: the last write wins. Anything "
        "else is a 400."
    ),
    "schema": string(pattern='^([*]|(W/)?"(0|[1-9][0-9]{0,17})"|0|[1-9][0-9]{0,17})$'),
}


def error_responses() -> Schema:
    """``components/responses``: one per error status."""
    responses: Schema = {}
    for status, (name, what) in ERRORS.items():
        responses[name] = {"description": what, "content": json_content(ref("Error"))}
        if status in ERROR_HEADERS:
            responses[name]["headers"] = ERROR_HEADERS[status]
    return responses


# -- operations ------------------------------------------------------------------


def path_parameter(name: str, description: str) -> Schema:
    """A path parameter: a non-empty string."""
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": string(min_length=1),
    }


def operation(
    method: str,
    operation_id: str,
    summary: str,
    tag: str,
    responses: dict[int, Schema],
    errors: Iterable[int] = (),
    body: Schema | None = None,
    content: Schema | None = None,
    query: Iterable[Schema] = (),
    public: bool = False,
    description: str | None = None,
    body_limit: int = MAX_BODY,
    conditional: bool = False,
    etag: Iterable[int] = (),
) -> tuple[str, Schema]:
    """
    One operation: ``(method, operation object)``. ``responses`` maps success
    statuses to answers; ``errors`` lists the error statuses besides those
    that come with a key (401 and 429, and 403 on all but GET) and with a body
    (400 and 413). ``body`` is a JSON body's schema, ``content`` any other body.
    ``conditional``: it takes an ``If-Match`` (400 when malformed, 412 when it
    no longer matches); ``etag``: the success statuses whose answer has an ``ETag``.
    """
    op: Schema = {"operationId": operation_id, "summary": summary, "tags": [tag]}
    if description:
        op["description"] = description
    parameters = list(query)
    statuses = set(errors)
    if conditional:
        parameters.append(IF_MATCH)
        statuses.update((400, 412))
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        content = json_content(body)
    if content is not None:
        op["requestBody"] = {
            "required": True,
            "description": f"at most {body_limit // (1024 * 1024)} MiB (413 beyond)",
            "content": content,
        }
        statuses.update((400, 413))
    if public:
        op["security"] = []
    else:
        statuses.update((401, 429))
        if method != "get":
            statuses.add(403)
    op["responses"] = {
        str(status): dict(response, headers=ETAG_HEADER) if status in etag else response
        for status, response in responses.items()
    }
    for status in sorted(statuses):
        op["responses"][str(status)] = {"$ref": "#/components/responses/" + ERRORS[status][0]}
    return method, op


def path_item(*operations: tuple[str, Schema], parameters: Iterable[Schema] = ()) -> Schema:
    """A path item of ``operations``, with parameters common to them."""
    item: Schema = dict(operations)
    if parameters:
        item["parameters"] = list(parameters)
    return item


def crud(
    noun: str,
    tag: str,
    schema: Schema,
    input_schemas: tuple[Schema, Schema],
    parameter: Schema,
    links: Iterable[str],
    list_query: Iterable[Schema] = (),
    errors: dict[str, tuple[int, ...]] | None = None,
    delete: tuple[Schema, Iterable[Schema]] | None = None,
    descriptions: dict[str, str] | None = None,
) -> dict[str, Schema]:
    """
    ``/api/<noun>s`` (list, create) and ``/api/<noun>s/{<noun>_id}`` (read,
    update, delete) of one kind of record, as ``{path: path item}``.
    ``errors`` adds error statuses per operation (``list``, ``create``, ...);
    ``delete`` replaces the delete answer and query; ``descriptions`` per operation.
    """
    plural = noun + "s"
    title = noun.capitalize()
    errors = errors or {}
    descriptions = descriptions or {}
    create_input, update_input = input_schemas
    delete_answer, delete_query = delete or (ref("Deleted"), ())
    collection = path_item(
        operation(
            "get",
            f"list{title}s",
            f"List {plural}, a page at a time",
            tag,
            {200: answer(f"a page of {plural}", page_of(schema))},
            errors=(400,) + errors.get("list", ()),
            query=list(list_query) + QUERY_PAGE,
        ),
        operation(
            "post",
            f"create{title}",
            f"Create a {noun}",
            tag,
            {201: answer("the new record", schema, links_to(links, **{parameter["name"]: "$response.body#/data/id"}))},
            errors=errors.get("create", ()),
            etag=(201,),
            body=create_input,
            description=descriptions.get("create"),
        ),
    )
    item = path_item(
        operation(
            "get",
            f"get{title}",
            f"Read a {noun}",
            tag,
            {200: answer("the record", schema)},
            errors=(404,),
            etag=(200,),
        ),
        operation(
            "put",
            f"update{title}",
            f"Change a {noun}",
            tag,
            {200: answer("the record as changed", schema)},
            errors=(404,) + errors.get("update", ()),
            body=update_input,
            description=descriptions.get("update"),
            conditional=True,
            etag=(200,),
        ),
        operation(
            "delete",
            f"delete{title}",
            f"Delete a {noun}",
            tag,
            {200: answer("deleted", delete_answer)},
            errors=(404,) + errors.get("delete", ()),
            query=delete_query,
            description=descriptions.get("delete"),
            conditional=True,
        ),
        parameters=[parameter],
    )
    return {f"/api/{plural}": collection, f"/api/{plural}/{{{parameter['name']}}}": item}


ENDPOINT_ID = path_parameter("endpoint_id", "the endpoint's id")
SERVICE_ID = path_parameter("service_id", "the service's id")
DOMAIN_ID = path_parameter("domain_id", "the domain's id")
COLLECTION_ID = path_parameter("collection_id", "the collection's id")
KEY_ID = path_parameter("key_id", "the key's id (not the key)")
CONSUMER_ID = path_parameter("consumer_id", "the consumer's id")
POOL_ID_PARAMETER = path_parameter("pool_id", "the binding's name (not the service id)")

# What a created record's id leads to (OpenAPI links, followed by stateful testers).
ENDPOINT_OPERATIONS = (
    "getEndpoint",
    "updateEndpoint",
    "compileEndpoint",
    "startEndpoint",
    "stopEndpoint",
    "restartEndpoint",
    "endpointVersions",
    "rollbackEndpoint",
    "endpointLogs",
    "endpointBindings",
    "bindService",
    "deleteEndpoint",
)
SERVICE_OPERATIONS = ("getService", "updateService", "testService", "deleteService")
DOMAIN_OPERATIONS = ("getDomain", "updateDomain", "domainCollections", "deleteDomain")
COLLECTION_OPERATIONS = ("getCollection", "updateCollection", "collectionEndpoints", "deleteCollection")
CONSUMER_OPERATIONS = ("getConsumer", "updateConsumer", "createConsumerKey", "deleteConsumer")


def endpoint_paths() -> dict[str, Schema]:
    """The operations on endpoints, their lifecycle, versions, logs and bindings."""
    paths = crud(
        "endpoint",
        "endpoints",
        ref("Endpoint"),
        (ref("EndpointCreate"), ref("EndpointUpdate")),
        ENDPOINT_ID,
        ENDPOINT_OPERATIONS,
        list_query=[
            query_parameter("domain", "only endpoints served on this host (any case)"),
            query_parameter("collection_id", "only the endpoints of this collection"),
            flag_parameter("enabled", "only enabled (true) or disabled (false) endpoints"),
        ],
        errors={"create": (409,), "update": (409, 502)},
        descriptions={
            "create": "409 when another endpoint serves the same method and path on the same host.",
            "update": (
                "A change of code or dependencies clears the compiled artifact; disabling a "
                "running endpoint stops it. 409 when the new route is another endpoint's. A change "
                "of a running endpoint's worker settings replaces its workers (new ones ready, "
                "route switched, old ones drained); 502 when the new ones fail to start (the "
                "old ones keep serving and those settings are not changed)."
            ),
            "delete": "Stops its workers first; deletes its bindings.",
        },
    )
    lifecycle = {
        "start": ("Start the workers: `status` is `running`, `pids` lists them", (404, 409, 502)),
        "stop": ("Drain and stop the workers: `status` is `stopped`", (404,)),
        "restart": (
            "New workers on the latest compiled binary, then drain the old ones "
            "(502 when they fail to start: the old ones keep serving)",
            (404, 409, 502),
        ),
    }
    for action, (summary, errors) in lifecycle.items():
        paths[f"/api/endpoints/{{endpoint_id}}/{action}"] = path_item(
            operation(
                "post",
                f"{action}Endpoint",
                summary,
                "endpoints",
                {200: answer("the record", ref("Endpoint"))},
                errors=errors,
                etag=(200,),
            ),
            parameters=[ENDPOINT_ID],
        )
    unbind_link = links_to(
        ("unbindService",),
        endpoint_id="$response.body#/data/endpoint_id",
        pool_id="$response.body#/data/pool_id",
    )
    paths.update(
        {
            "/api/endpoints/{endpoint_id}/compile": path_item(
                operation(
                    "post",
                    "compileEndpoint",
                    "Compile the endpoint's code (waits for cargo)",
                    "endpoints",
                    {200: answer("compiled: the record and the build", ref("CompiledEndpoint"))},
                    errors=(404, 422, 503),
                    etag=(200,),
                ),
                parameters=[ENDPOINT_ID],
            ),
            "/api/endpoints/{endpoint_id}/versions": path_item(
                operation(
                    "get",
                    "endpointVersions",
                    "The endpoint's compiled versions, newest first",
                    "endpoints",
                    {200: answer("a page of versions", page_of(ref("Version")))},
                    errors=(400, 404),
                    query=QUERY_PAGE,
                ),
                parameters=[ENDPOINT_ID],
            ),
            "/api/endpoints/{endpoint_id}/rollback": path_item(
                operation(
                    "post",
                    "rollbackEndpoint",
                    "Serve an earlier version without compiling",
                    "endpoints",
                    {200: answer("the record, running that version", ref("Endpoint"))},
                    errors=(404, 409, 502),
                    body=ref("RollbackInput"),
                    etag=(200,),
                    description=(
                        "A running endpoint switches as a restart does (new workers ready, route "
                        "switched, old ones drained; 502 and the old ones keep serving when the new "
                        "ones fail to start); a stopped one starts on it. 404: no such version of this "
                        "endpoint; 409: its binary was pruned, or the endpoint is disabled."
                    ),
                ),
                parameters=[ENDPOINT_ID],
            ),
            "/api/endpoints/{endpoint_id}/logs": path_item(
                operation(
                    "get",
                    "endpointLogs",
                    "The workers' stderr lines",
                    "endpoints",
                    {200: answer("the lines, oldest first", record({"lines": array(ref("LogLine"))}))},
                    errors=(400, 404),
                    query=[
                        query_parameter(
                            "since",
                            "epoch seconds: only lines after it (the last `time` seen)",
                            {"type": "number"},
                        )
                    ],
                ),
                parameters=[ENDPOINT_ID],
            ),
            "/api/endpoints/{endpoint_id}/services": path_item(
                operation(
                    "get",
                    "endpointBindings",
                    "The endpoint's bindings",
                    "bindings",
                    {200: answer("{pool_id: service_id}", map_of(ID))},
                    errors=(404,),
                ),
                operation(
                    "post",
                    "bindService",
                    "Bind a service to the endpoint under a name",
                    "bindings",
                    {
                        201: answer("a new name", ref("Binding"), unbind_link),
                        200: answer(
                            "the name was bound already and now names this service", ref("Binding"), unbind_link
                        ),
                    },
                    errors=(404,),
                    body=ref("BindingInput"),
                ),
                parameters=[ENDPOINT_ID],
            ),
            "/api/endpoints/{endpoint_id}/services/{pool_id}": path_item(
                operation(
                    "delete",
                    "unbindService",
                    "Remove the binding named pool_id",
                    "bindings",
                    {200: answer("unbound", ref("Unbound"))},
                    errors=(404,),
                ),
                parameters=[ENDPOINT_ID, POOL_ID_PARAMETER],
            ),
        }
    )
    return paths


def domain_paths() -> dict[str, Schema]:
    """The operations on domains and collections."""
    cascade = [flag_parameter("cascade", "true: delete what is in the way with it")]
    paths = crud(
        "domain",
        "domains",
        ref("Domain"),
        (DOMAIN_CREATE, DOMAIN_UPDATE),
        DOMAIN_ID,
        DOMAIN_OPERATIONS,
        # 404 on the collection routes too: a gateway built without domains.
        errors={"list": (404,), "create": (404, 409), "update": (409,), "delete": (400, 409)},
        delete=(ref("CascadeDeleted"), cascade),
        descriptions={
            "create": "409 when a domain has the host already.",
            "update": "A new host moves the endpoints on the old one, running ones at once; 409 on a clash.",
            "delete": (
                "409 (with `endpoints` and `collections` counts) while endpoints use its host or "
                "collections belong to it, unless `cascade=true`: then they are deleted first."
            ),
        },
    )
    paths.update(
        crud(
            "collection",
            "collections",
            ref("Collection"),
            (COLLECTION_CREATE, COLLECTION_UPDATE),
            COLLECTION_ID,
            COLLECTION_OPERATIONS,
            list_query=[query_parameter("domain_id", "only the collections of this domain")],
            errors={"list": (404,), "create": (404,), "update": (409,), "delete": (400, 409)},
            delete=(ref("CascadeDeleted"), cascade),
            descriptions={
                "create": "400 when `domain_id` names no domain.",
                "update": "A new base path or domain moves its endpoints, running ones at once; 409 on a clash.",
                "delete": "409 (with the `endpoints` count) while it has endpoints, unless `cascade=true`.",
            },
        )
    )
    paths["/api/domains/{domain_id}/collections"] = path_item(
        operation(
            "get",
            "domainCollections",
            "The domain's collections",
            "domains",
            {200: answer("a page of collections", page_of(ref("Collection")))},
            errors=(400, 404),
            query=QUERY_PAGE,
        ),
        parameters=[DOMAIN_ID],
    )
    paths["/api/collections/{collection_id}/endpoints"] = path_item(
        operation(
            "get",
            "collectionEndpoints",
            "The collection's endpoints",
            "collections",
            {200: answer("a page of endpoints", page_of(ref("Endpoint")))},
            errors=(400, 404),
            query=QUERY_PAGE,
        ),
        parameters=[COLLECTION_ID],
    )
    return paths


def service_paths() -> dict[str, Schema]:
    """The operations on services."""
    paths = crud(
        "service",
        "services",
        ref("Service"),
        (ref("ServiceCreate"), ref("ServiceUpdate")),
        SERVICE_ID,
        SERVICE_OPERATIONS,
        list_query=[query_parameter("service_type", "only services of this type")],
        # 404 on the collection routes too: a gateway built without the service plane.
        errors={"list": (404,), "create": (404, 409), "update": (409,), "delete": (409,)},
        descriptions={
            "create": "Answers with secrets masked. 409 when the name is taken (names ignore case).",
            "update": f'A secret sent as "{MASK}" keeps the stored one; 409 when the name is taken.',
            "delete": "Closes its connections; 409 while it is bound, with `bindings` naming them.",
        },
    )
    paths["/api/services/{service_id}/test"] = path_item(
        operation(
            "post",
            "testService",
            "Ask the backend to answer",
            "services",
            {200: answer("it answered", record({"latency_ms": {"type": "number", "minimum": 0}}))},
            errors=(404, 502),
            description="502 with the backend's message and `kind` when it fails.",
        ),
        parameters=[SERVICE_ID],
    )
    return paths


def key_paths() -> dict[str, Schema]:
    """The operations on API keys."""
    listed = revised(dict(KEY_PROPERTIES, current=dict(BOOLEAN, description="the key making this request")))
    created = revised(dict(KEY_PROPERTIES, key=string(description="the key itself, shown this once")))
    revoked = revised(dict(KEY_PROPERTIES, deleted={"const": True}))
    return {
        "/api/keys": path_item(
            operation(
                "get",
                "listKeys",
                "List API keys (never the keys themselves)",
                "keys",
                {200: answer("a page of keys", page_of(listed))},
                errors=(400,),
                query=QUERY_PAGE,
            ),
            operation(
                "post",
                "createKey",
                "Create an API key",
                "keys",
                {
                    201: answer(
                        "the record and `key`, the plaintext: the only time it is shown",
                        created,
                        links_to(("deleteKey",), key_id="$response.body#/data/id"),
                    )
                },
                body=NEW_KEY,
                etag=(201,),
            ),
        ),
        "/api/keys/{key_id}": path_item(
            operation(
                "delete",
                "deleteKey",
                "Revoke an API key",
                "keys",
                {200: answer("revoked: the next request with it is a 401", revoked)},
                errors=(404, 409),
                description="409 for the last `admin` key: create another first.",
                conditional=True,
            ),
            parameters=[KEY_ID],
        ),
    }


def consumer_paths() -> dict[str, Schema]:
    """The operations on consumers (the clients of api_key policies) and their keys."""
    paths = crud(
        "consumer",
        "consumers",
        ref("Consumer"),
        (CONSUMER_CREATE, CONSUMER_UPDATE),
        CONSUMER_ID,
        CONSUMER_OPERATIONS,
        # 404 on the collection routes too: a gateway built without consumers.
        errors={"list": (404,), "create": (404, 409), "update": (409,)},
        descriptions={
            "create": "A consumer with no key yet (POST its keys). 409 when the name is taken (names ignore case).",
            "update": "Rename, enable or disable it; a disabled consumer's keys are refused (401) from the next request on.",
            "delete": "Its keys go with it: refused from the next request on.",
        },
    )
    paths["/api/consumers/{consumer_id}/keys"] = path_item(
        operation(
            "post",
            "createConsumerKey",
            "Make an API key of the consumer",
            "consumers",
            {
                201: answer(
                    "the key's id and `key`, the key itself: the only time it is shown (stored hashed)",
                    ref("NewConsumerKey"),
                    links_to(
                        ("deleteConsumerKey",), consumer_id="$request.path.consumer_id", key_id="$response.body#/data/id"
                    ),
                )
            },
            errors=(404,),
        ),
        parameters=[CONSUMER_ID],
    )
    paths["/api/consumers/{consumer_id}/keys/{key_id}"] = path_item(
        operation(
            "delete",
            "deleteConsumerKey",
            "Delete an API key of the consumer",
            "consumers",
            {200: answer("deleted: the next request with it is a 401", record(
                {"id": ID, "consumer_id": ID, "deleted": {"const": True}}
            ))},
            errors=(404,),
        ),
        parameters=[CONSUMER_ID, KEY_ID],
    )
    return paths


def import_paths() -> dict[str, Schema]:
    """The imports of an OpenAPI spec and of a bundle."""
    return {
        "/api/import/openapi": path_item(
            operation(
                "post",
                "importOpenapi",
                "One endpoint per operation of an OpenAPI spec, with a stub handler",
                "imports",
                {200: answer("what the import did", record(IMPORTED))},
                errors=(409,),
                body=IMPORT_OPENAPI,
                body_limit=IMPORT_MAX_BODY,
                description=(
                    "400 (with `field` and `path`, a JSON pointer) for a spec that is not valid "
                    "OpenAPI 3.0 or 3.1 or has a path the gateway cannot route, before anything is "
                    "written; 400 for a `collection_id` that names no collection."
                ),
            )
        ),
        "/api/import/bundle": path_item(
            operation(
                "post",
                "importBundle",
                "A zip of an OpenAPI spec and handler .rs files matched to operationIds",
                "imports",
                {200: answer("what the import did, with each file's fate", IMPORTED_BUNDLE)},
                errors=(409,),
                content=BUNDLE_CONTENT,
                body_limit=IMPORT_MAX_BODY,
                query=bundle_query(),
                description=(
                    "The zip as multipart/form-data field `bundle`, or as the raw body. 400 for "
                    "a body that is not a zip, an unsafe entry name, an invalid spec, or a query "
                    "parameter not listed here; 413 for a bundle over its caps, inflated."
                ),
            )
        ),
    }


def system_paths() -> dict[str, Schema]:
    """Health, the document itself, stats and test requests."""
    return {
        "/api/health": path_item(
            operation(
                "get",
                "health",
                "Is the gateway up",
                "system",
                {200: answer("healthy", ref("Health"))},
                errors=(503,),
                public=True,
            )
        ),
        "/api/openapi.json": path_item(
            operation(
                "get",
                "openapi",
                "This document",
                "system",
                {
                    200: {
                        "description": "the OpenAPI 3.1 document, bare (not in the envelope)",
                        "content": json_content({"type": "object", "required": ["openapi", "paths"]}),
                    }
                },
                public=True,
            )
        ),
        "/api/stats": path_item(
            operation(
                "get",
                "stats",
                "Endpoint counts by status, requests handled, workers, uptime",
                "system",
                {200: answer("the numbers", ref("Stats"))},
                description=(
                    "`requests` are read, when asked, from the data plane's request counters, the ones "
                    "`/metrics` exposes (`edgegw_http_requests_total`, `edgegw_http_request_duration_seconds`), "
                    "summed over the data-plane processes: `served` is every answer, the gateway's own (404, "
                    "405, 503, ...; endpoint `\"\"`) included, and equals the sum of `by_endpoint`. They count "
                    "since the data-plane process started. `rejected` and `workers` are the running pools' own."
                ),
            )
        ),
        "/api/nodes": path_item(
            operation(
                "get",
                "listNodes",
                "The cluster's nodes: up or down, their workers",
                "system",
                {200: answer("a page of nodes", page_of(ref("Node")))},
                errors=(400, 404, 503),
                query=QUERY_PAGE,
                description=(
                    "Every node that has sent a heartbeat to the shared store (every 2 s), this one "
                    "marked `self`; a node is `down` once it missed 3. With a store of one node "
                    "(SQLite), this node alone. 503 while the store cannot be reached; 404 in a "
                    "gateway built without a node directory."
                ),
            )
        ),
        "/api/stats/history": path_item(
            operation(
                "get",
                "statsHistory",
                "Requests, request rate and latency over the last minutes, per endpoint and in all",
                "system",
                {200: answer("the samples, as columns", ref("StatsHistory"))},
                errors=(400, 404),
                query=[
                    query_parameter("endpoint_id", "only this endpoint (404 when there is none)"),
                    query_parameter(
                        "top",
                        f"this many endpoints, those with the most requests in the window (empty: {_history.DEFAULT_TOP})",
                        {"anyOf": [integer(1, _history.MAX_TOP, default=_history.DEFAULT_TOP), EMPTY]},
                    ),
                ],
                description=(
                    f"One sample every {_history.DEFAULT_INTERVAL:g} s of the data plane's request "
                    f"counters (those of `/metrics`), the last {_history.DEFAULT_WINDOW / 60:g} minutes, "
                    "kept across a restart. Each series has one value per `times` entry; an endpoint's "
                    "values are null where it was not running. `failed` counts 5xx answers. `p50_ms` is "
                    "estimated from the duration histogram's buckets."
                ),
            )
        ),
        "/api/test-request": path_item(
            operation(
                "post",
                "testRequest",
                "Send a request to this gateway's data plane and answer what it answered",
                "system",
                {200: answer("the data plane's answer, whatever its status", ref("TestRequestAnswer"))},
                errors=(404, 502, 504),
                body=ref("TestRequestInput"),
                description=(
                    "For the Admin UI's test console. The connection always goes to the gateway's own "
                    "data-plane listener, whatever `Host` says. 502 when the data plane cannot be "
                    "reached or drops the connection, 504 after `timeout`."
                ),
            )
        ),
    }


# -- the document ------------------------------------------------------------------

TAGS = ("system", "endpoints", "bindings", "services", "domains", "collections", "consumers", "keys", "imports")


def build_document() -> Schema:
    """The whole document."""
    paths = {}
    for part in (system_paths, endpoint_paths, domain_paths, service_paths, consumer_paths, key_paths, import_paths):
        paths.update(part())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "edgegw management API",
            "version": __version__,
            "description": (
                "The control plane of edgegw (docs/api.md). Every answer is "
                '`{"ok": true, "data": ...}` or `{"ok": false, "error": "...", ...}` with a '
                "matching status; every call but GET /api/health and GET /api/openapi.json needs "
                "`Authorization: Bearer <key>`."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "tags": [{"name": name} for name in TAGS],
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API key; `read` keys may only GET",
                }
            },
            "schemas": schemas(),
            "responses": error_responses(),
        },
    }


DOCUMENT = build_document()
DOCUMENT_JSON = json.dumps(DOCUMENT, separators=(",", ":")).encode("utf-8")
