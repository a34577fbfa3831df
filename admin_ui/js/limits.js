// The management API's input limits, for the Admin UI's inputs. Generated from
// edgegw_tx/admin/schema.py by tools/gen-api-docs: do not edit.
export const LIMITS = Object.freeze({
  "endpointName": 200,
  "collectionName": 200,
  "keyName": 100,
  "description": 10000,
  "code": 1000000,
  "serviceName": 64,
  "poolId": 64
});
