// The management API's input limits, for the Admin UI's inputs. Generated from
// edgegw_tx/admin/schema.py by tools/gen-api-docs: do not edit.
export const LIMITS = Object.freeze({
  "endpointName": 200,
  "collectionName": 200,
  "keyName": 100,
  "description": 10000,
  "code": 1000000,
  "serviceName": 64,
  "poolId": 64,
  "maxRoutes": 32
});
// What the API shows for a secret that is set (a service's password).
export const MASK = "********";
// The config fields of each service type: [name, kind, default or options, hint].
export const SERVICE_FIELDS = Object.freeze({
  "sqlite": [
    [
      "path",
      "text",
      "",
      "relative to <data-dir>/services/; default <name>.sqlite3"
    ],
    [
      "create_if_missing",
      "bool",
      true
    ]
  ],
  "postgres": [
    [
      "host",
      "text",
      "",
      "required"
    ],
    [
      "port",
      "int",
      5432,
      "1 to 65535"
    ],
    [
      "database",
      "text",
      "",
      "required"
    ],
    [
      "username",
      "text",
      "",
      "required"
    ],
    [
      "password",
      "secret",
      null
    ],
    [
      "ssl_mode",
      "choice",
      [
        "prefer",
        "disable",
        "allow",
        "require",
        "verify-ca",
        "verify-full"
      ]
    ],
    [
      "pool_size",
      "int",
      10,
      "1 to 100"
    ]
  ],
  "redis": [
    [
      "host",
      "text",
      "",
      "required"
    ],
    [
      "port",
      "int",
      6379,
      "1 to 65535"
    ],
    [
      "password",
      "secret",
      null
    ],
    [
      "username",
      "text",
      null
    ],
    [
      "database",
      "int",
      0,
      "0 to 2147483647"
    ],
    [
      "use_tls",
      "bool",
      false
    ],
    [
      "pool_size",
      "int",
      10,
      "1 to 100"
    ]
  ],
  "storage": [
    [
      "backend",
      "choice",
      [
        "filesystem",
        "s3"
      ]
    ],
    [
      "path",
      "text",
      "",
      "filesystem backend; relative to <data-dir>/services/; default <name>"
    ],
    [
      "endpoint",
      "text",
      "",
      "s3 backend"
    ],
    [
      "bucket",
      "text",
      "",
      "s3 backend; required"
    ],
    [
      "region",
      "text",
      "",
      "s3 backend"
    ],
    [
      "access_key",
      "secret",
      null,
      "s3 backend"
    ],
    [
      "secret_key",
      "secret",
      null,
      "s3 backend"
    ],
    [
      "addressing_style",
      "choice",
      [
        "path",
        "virtual"
      ],
      "s3 backend"
    ]
  ]
});
