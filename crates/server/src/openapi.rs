//! The OpenAPI 3.1 document served at `/v1/openapi.json` (hand-written; a test checks that it
//! names every route the router serves).

pub const DOCUMENT: &str = r##"{
  "openapi": "3.1.0",
  "info": {
    "title": "Switchyard control plane",
    "version": "1",
    "description": "Submit, inspect and cancel training runs, batch jobs and inference services, and read their output. Every /v1 route but this document needs `Authorization: Bearer TOKEN`; a token belongs to one tenant (or is an admin token, or a node agent's token, which the tenant routes refuse with 403). Another tenant's job answers 404. Errors are {\"error\": {\"code\", \"message\"}}."
  },
  "components": {
    "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
    "schemas": {
      "SubmitRequest": {
        "type": "object", "additionalProperties": false, "required": ["kind", "accelerators"],
        "description": "null for a property that is not required (here or in command) means the same as leaving it out",
        "properties": {
          "name": { "type": "string", "pattern": "^[A-Za-z0-9._-]{1,128}$", "description": "unique per tenant; a second submission with the same name answers 409" },
          "kind": { "enum": ["training", "batch", "inference"] },
          "tenant": { "type": "string", "description": "admin tokens only" },
          "accelerators": { "type": "integer", "minimum": 1, "maximum": 1000000 },
          "min_accelerators": { "type": "integer", "minimum": 1, "description": "elastic training only" },
          "priority": { "type": "integer", "minimum": -1000, "maximum": 1000 },
          "accelerator_types": { "type": "array", "items": { "type": "string" }, "maxItems": 64 },
          "clusters": { "type": "array", "items": { "type": "string" }, "maxItems": 64 },
          "duration_s": { "type": "number", "exclusiveMinimum": 0, "maximum": 31622400, "description": "training and batch: seconds of work on the full gang" },
          "replicas": { "type": "object", "additionalProperties": false, "required": ["min", "max"],
            "properties": { "min": { "type": "integer", "minimum": 1 }, "max": { "type": "integer", "maximum": 100000 } },
            "description": "inference only" },
          "command": { "type": "object", "additionalProperties": false, "required": ["argv"],
            "properties": {
              "argv": { "type": "array", "items": { "type": "string", "maxLength": 4096 }, "minItems": 1, "maxItems": 256 },
              "env": { "type": "object", "additionalProperties": { "type": "string" }, "maxProperties": 256 },
              "working_dir": { "type": "string" } },
            "description": "what every rank (training, batch) or replica (inference) runs on agent and Slurm clusters; Switchyard's variables (RANK, WORLD_SIZE, SWITCHYARD_*) win over env" },
          "max_retries": { "type": "integer", "minimum": 0, "maximum": 1000, "default": 3, "description": "training and batch: restarts after failed processes before the job fails (lost nodes do not count)" }
        }
      },
      "Job": {
        "type": "object",
        "required": ["id", "tenant", "kind", "state", "reason", "priority", "accelerators", "allocated", "restarts", "cancel_requested", "submitted_ms", "spec"],
        "properties": {
          "id": { "type": "string" }, "name": { "type": ["string", "null"] }, "tenant": { "type": "string" },
          "kind": { "enum": ["training", "batch", "inference"] },
          "state": { "enum": ["pending", "running", "done", "failed", "cancelled", "rejected"] },
          "reason": { "type": "string", "description": "why the job is where it is" },
          "priority": { "type": "integer" }, "accelerators": { "type": "integer" },
          "cluster": { "type": ["string", "null"] }, "allocated": { "type": "integer" },
          "restarts": { "type": "integer" }, "cancel_requested": { "type": "boolean" },
          "replicas_wanted": { "type": "integer", "description": "inference services: the replica count last asked for with POST /v1/jobs/{id}/scale; absent until then (the service runs its minimum). Replicas serving now: allocated / accelerators" },
          "submitted_ms": { "type": "integer" }, "started_ms": { "type": ["integer", "null"] },
          "finished_ms": { "type": ["integer", "null"] },
          "spec": { "$ref": "#/components/schemas/SubmitRequest" }
        }
      },
      "ScaleRequest": { "type": "object", "additionalProperties": false, "required": ["replicas"], "properties": {
        "replicas": { "type": "integer", "description": "within the service's submitted replicas = { min, max }" } } },
      "JobList": { "type": "object", "required": ["jobs"], "properties": {
        "jobs": { "type": "array", "items": { "$ref": "#/components/schemas/Job" } },
        "next": { "type": ["string", "null"], "description": "pass as `after` for the next page" } } },
      "Event": { "type": "object", "required": ["cursor", "at_ms", "kind", "message"], "properties": {
        "cursor": { "type": "integer", "description": "the event's number among the job's events, from 1; pass the last one seen as `after`" },
        "at_ms": { "type": "integer" },
        "kind": { "type": "string", "description": "submitted, waiting, started, replica_added, replica_removed, replica_lost, replica_restarted, scale_requested, preempted, restarted, recovered, cancel_requested, cancelled, finished, rejected" },
        "cluster": { "type": ["string", "null"] }, "message": { "type": "string" } } },
      "JobEvents": { "type": "object", "required": ["job", "state", "reason", "events"], "properties": {
        "job": { "type": "string" }, "state": { "type": "string" }, "reason": { "type": "string" },
        "events": { "type": "array", "items": { "$ref": "#/components/schemas/Event" } },
        "next": { "type": "integer", "description": "present when the page is full: pass as `after` for the next page" } } },
      "LogEntry": { "type": "object", "additionalProperties": false, "required": ["cursor", "attempt", "rank", "stream", "at_ms", "line"], "properties": {
        "cursor": { "type": "integer", "description": "the line's number among the job's lines, from 1 (increasing, with gaps); pass the last one seen as `after`" },
        "attempt": { "type": "integer", "minimum": 1 }, "rank": { "type": "integer", "minimum": 0 },
        "replica": { "type": "string", "description": "inference services: which replica wrote the line" },
        "stream": { "enum": ["stdout", "stderr"] }, "at_ms": { "type": "integer" },
        "line": { "type": "string", "description": "the text, without its newline" } } },
      "JobLogs": { "type": "object", "additionalProperties": false, "required": ["job", "lines"], "properties": {
        "job": { "type": "string" },
        "lines": { "type": "array", "items": { "$ref": "#/components/schemas/LogEntry" } },
        "next": { "type": "integer", "description": "present when the page is full: pass as `after` for the next page" } } },
      "FleetState": { "type": "object", "required": ["name", "clusters"], "properties": {
        "name": { "type": "string" },
        "clusters": { "type": "array", "items": { "type": "object", "properties": {
          "name": { "type": "string" }, "provider": { "type": "string" }, "region": { "type": "string" },
          "accelerator": { "type": "string" }, "nodes": { "type": "integer" }, "accelerators": { "type": "integer" },
          "busy": { "type": "integer" }, "running_jobs": { "type": "integer" } } } } } },
      "TenantList": { "type": "object", "required": ["tenants"], "properties": {
        "tenants": { "type": "array", "items": { "type": "object", "properties": {
          "tenant": { "type": "string" }, "organisation": { "type": ["string", "null"] },
          "pending": { "type": "integer" }, "running": { "type": "integer" }, "allocated": { "type": "integer" },
          "quotas": { "type": "array", "items": { "type": "object", "properties": {
            "cluster": { "type": ["string", "null"] }, "accelerators": { "type": "integer" },
            "borrowing_limit": { "type": ["integer", "null"] } } } } } } } } },
      "Error": { "type": "object", "required": ["error"], "properties": { "error": { "type": "object",
        "required": ["code", "message"], "properties": {
          "code": { "enum": ["invalid_json", "invalid_request", "unauthorized", "forbidden", "not_found", "method_not_allowed", "conflict", "cluster_full", "quota_exceeded", "unschedulable", "too_large", "timeout", "unsupported_encoding", "unavailable", "fleet_conflict", "unknown_node", "internal"] },
          "message": { "type": "string" } } } } }
    },
    "responses": {
      "Error": { "description": "an error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
    }
  },
  "security": [{ "bearer": [] }],
  "paths": {
    "/healthz": { "get": { "summary": "liveness", "security": [], "responses": { "200": { "description": "alive" }, "400": { "$ref": "#/components/responses/Error" } } } },
    "/readyz": { "get": { "summary": "readiness: the store answers; says whether this replica schedules (leader) or not", "security": [], "responses": { "200": { "description": "ready" }, "400": { "$ref": "#/components/responses/Error" }, "503": { "$ref": "#/components/responses/Error" } } } },
    "/metrics": { "get": { "summary": "Prometheus metrics (text format 0.0.4): fleet-wide series, and per-tenant series of the token's tenant (every tenant's for admin tokens)", "responses": { "200": { "description": "metrics" }, "400": { "$ref": "#/components/responses/Error" }, "401": { "$ref": "#/components/responses/Error" } } } },
    "/v1/openapi.json": { "get": { "summary": "this document", "security": [], "responses": { "200": { "description": "OpenAPI 3.1" }, "400": { "$ref": "#/components/responses/Error" } } } },
    "/v1/jobs": {
      "post": { "summary": "submit a job; durable when answered", "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/SubmitRequest" } } } },
        "responses": { "201": { "description": "accepted", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Job" } } } },
          "400": { "$ref": "#/components/responses/Error" }, "401": { "$ref": "#/components/responses/Error" }, "403": { "$ref": "#/components/responses/Error" },
          "409": { "$ref": "#/components/responses/Error" }, "413": { "$ref": "#/components/responses/Error" }, "415": { "$ref": "#/components/responses/Error" }, "422": { "$ref": "#/components/responses/Error" } } },
      "get": { "summary": "list jobs in submission order",
        "parameters": [
          { "name": "state", "in": "query", "schema": { "type": "string" }, "description": "comma-separated states" },
          { "name": "kind", "in": "query", "schema": { "enum": ["training", "batch", "inference"] } },
          { "name": "tenant", "in": "query", "schema": { "type": "string" }, "description": "admin tokens only" },
          { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1000, "default": 100 } },
          { "name": "after", "in": "query", "schema": { "type": "string" }, "description": "cursor: `next` of the previous page" } ],
        "responses": { "200": { "description": "a page", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/JobList" } } } },
          "400": { "$ref": "#/components/responses/Error" }, "401": { "$ref": "#/components/responses/Error" }, "403": { "$ref": "#/components/responses/Error" } } }
    },
    "/v1/jobs/{id}": { "get": { "summary": "one job", "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
      "responses": { "200": { "description": "the job", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Job" } } } }, "404": { "$ref": "#/components/responses/Error" }, "401": { "$ref": "#/components/responses/Error" }, "403": { "$ref": "#/components/responses/Error" } } } },
    "/v1/jobs/{id}/cancel": { "post": { "summary": "request cancellation (the scheduling leader carries it out); no body, or `{}`", "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
      "responses": { "202": { "description": "cancellation requested", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Job" } } } }, "400": { "$ref": "#/components/responses/Error" }, "404": { "$ref": "#/components/responses/Error" }, "409": { "$ref": "#/components/responses/Error" }, "415": { "$ref": "#/components/responses/Error" }, "401": { "$ref": "#/components/responses/Error" }, "403": { "$ref": "#/components/responses/Error" } } } },
    "/v1/jobs/{id}/scale": { "post": { "summary": "set an inference service's wanted replica count (within its submitted range); the scheduling leader adds or removes replicas as capacity allows", "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
      "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ScaleRequest" } } } },
      "responses": { "200": { "description": "the count is stored; the job as it stands", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Job" } } } },
        "400": { "$ref": "#/components/responses/Error" }, "404": { "$ref": "#/components/responses/Error" }, "415": { "$ref": "#/components/responses/Error" }, "422": { "$ref": "#/components/responses/Error" }, "401": { "$ref": "#/components/responses/Error" }, "403": { "$ref": "#/components/responses/Error" } } } },
    "/v1/jobs/{id}/events": { "get": { "summary": "a page of a job's events in order, and why it is where it is",
      "parameters": [
        { "name": "id", "in": "path", "required": true, "schema": { "type": "string" } },
        { "name": "after", "in": "query", "schema": { "type": "integer", "minimum": 0, "default": 0 }, "description": "cursor: only events after it" },
        { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1000, "default": 1000 } } ],
      "responses": { "200": { "description": "events", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/JobEvents" } } } }, "400": { "$ref": "#/components/responses/Error" }, "404": { "$ref": "#/components/responses/Error" }, "401": { "$ref": "#/components/responses/Error" }, "403": { "$ref": "#/components/responses/Error" } } } },
    "/v1/jobs/{id}/logs": { "get": { "summary": "a job's output lines (stdout and stderr of every rank and attempt) in cursor order",
      "parameters": [
        { "name": "id", "in": "path", "required": true, "schema": { "type": "string" } },
        { "name": "rank", "in": "query", "schema": { "type": "integer", "minimum": 0 }, "description": "only this rank" },
        { "name": "attempt", "in": "query", "schema": { "type": "integer", "minimum": 1 }, "description": "only this attempt" },
        { "name": "replica", "in": "query", "schema": { "type": "string", "pattern": "^[0-9a-f]{1,16}\\.[0-9]{1,10}$" }, "description": "only this replica of an inference service (a line's `replica`)" },
        { "name": "after", "in": "query", "schema": { "type": "integer", "minimum": 0, "default": 0 }, "description": "cursor: only lines after it" },
        { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1000, "default": 1000 } } ],
      "responses": { "200": { "description": "a page of lines", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/JobLogs" } } } },
        "400": { "$ref": "#/components/responses/Error" }, "403": { "$ref": "#/components/responses/Error" }, "404": { "$ref": "#/components/responses/Error" }, "401": { "$ref": "#/components/responses/Error" } } } },
    "/v1/fleet": { "get": { "summary": "clusters and what runs on them", "responses": { "200": { "description": "fleet", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/FleetState" } } } }, "401": { "$ref": "#/components/responses/Error" }, "403": { "$ref": "#/components/responses/Error" } } } },
    "/v1/tenants": { "get": { "summary": "tenants, quotas and usage (your own; every tenant for admins)", "responses": { "200": { "description": "tenants", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/TenantList" } } } }, "401": { "$ref": "#/components/responses/Error" }, "403": { "$ref": "#/components/responses/Error" } } } },
    "/v1/agent/register": { "post": { "summary": "node agents: register a node (NodeInfo, docs/agent.md); the same host in the same cluster keeps its id and node slot", "responses": { "200": { "description": "{node_id, heartbeat_interval_ms}" }, "400": { "$ref": "#/components/responses/Error" }, "403": { "$ref": "#/components/responses/Error" }, "409": { "$ref": "#/components/responses/Error" }, "401": { "$ref": "#/components/responses/Error" } } } },
    "/v1/agent/nodes": { "get": { "summary": "node agents and admins: the registered nodes, their state (ready/lost) and the jobs on them", "responses": { "200": { "description": "nodes" }, "403": { "$ref": "#/components/responses/Error" }, "401": { "$ref": "#/components/responses/Error" } } } },
    "/v1/agent/nodes/{id}/heartbeat": { "post": { "summary": "node agents: a sign of life", "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }], "responses": { "204": { "description": "noted" }, "404": { "$ref": "#/components/responses/Error" }, "401": { "$ref": "#/components/responses/Error" }, "403": { "$ref": "#/components/responses/Error" } } } },
    "/v1/agent/nodes/{id}/assignments": { "get": { "summary": "node agents: the complete set of processes the node should run", "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }], "responses": { "200": { "description": "{assignments: [Assignment]}" }, "404": { "$ref": "#/components/responses/Error" }, "401": { "$ref": "#/components/responses/Error" }, "403": { "$ref": "#/components/responses/Error" } } } },
    "/v1/agent/nodes/{id}/status": { "put": { "summary": "node agents: the status of every process the node knows", "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }], "responses": { "204": { "description": "noted" }, "400": { "$ref": "#/components/responses/Error" }, "404": { "$ref": "#/components/responses/Error" }, "401": { "$ref": "#/components/responses/Error" }, "403": { "$ref": "#/components/responses/Error" } } } },
    "/v1/agent/nodes/{id}/logs": { "post": { "summary": "node agents: output lines of the node's processes", "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }], "responses": { "204": { "description": "stored" }, "400": { "$ref": "#/components/responses/Error" }, "404": { "$ref": "#/components/responses/Error" }, "401": { "$ref": "#/components/responses/Error" }, "403": { "$ref": "#/components/responses/Error" } } } },
    "/v1/agent/nodes/{id}/drain": { "post": { "summary": "admins: take a node (its id or host name) out of service for new work; what runs on it goes on. Body (optional): {reason}", "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }], "responses": { "200": { "description": "{id, cluster, hostname, drained: {reason (absent when none was given), since_ms}, was_drained, state: ready | lost}" }, "400": { "$ref": "#/components/responses/Error" }, "403": { "$ref": "#/components/responses/Error" }, "404": { "$ref": "#/components/responses/Error" }, "409": { "$ref": "#/components/responses/Error" }, "503": { "$ref": "#/components/responses/Error" }, "401": { "$ref": "#/components/responses/Error" } } } },
    "/v1/agent/nodes/{id}/resume": { "post": { "summary": "admins: put a drained node (its id or host name) back in service", "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }], "responses": { "200": { "description": "{id, cluster, hostname, drained: null, was_drained, state: ready | lost}" }, "400": { "$ref": "#/components/responses/Error" }, "403": { "$ref": "#/components/responses/Error" }, "404": { "$ref": "#/components/responses/Error" }, "409": { "$ref": "#/components/responses/Error" }, "503": { "$ref": "#/components/responses/Error" }, "401": { "$ref": "#/components/responses/Error" } } } }
  }
}
"##;

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_is_json_and_names_every_route() {
        let doc: serde_json::Value = serde_json::from_str(super::DOCUMENT).expect("valid JSON");
        let paths = doc["paths"].as_object().expect("paths");
        // Every route of `http::router` (keep in step with it).
        for p in [
            "/healthz",
            "/readyz",
            "/metrics",
            "/v1/openapi.json",
            "/v1/jobs",
            "/v1/jobs/{id}",
            "/v1/jobs/{id}/cancel",
            "/v1/jobs/{id}/scale",
            "/v1/jobs/{id}/events",
            "/v1/jobs/{id}/logs",
            "/v1/fleet",
            "/v1/tenants",
            "/v1/agent/register",
            "/v1/agent/nodes",
            "/v1/agent/nodes/{id}/heartbeat",
            "/v1/agent/nodes/{id}/assignments",
            "/v1/agent/nodes/{id}/status",
            "/v1/agent/nodes/{id}/logs",
            "/v1/agent/nodes/{id}/drain",
            "/v1/agent/nodes/{id}/resume",
        ] {
            assert!(paths.contains_key(p), "{p} is not documented");
        }
        assert_eq!(paths.len(), 20);
        // Every operation that takes a token lists 401 (no token, or an unknown one), and
        // those of the tenant and agent routes 403 (a token of the other kind).
        for (path, ops) in paths {
            for (method, op) in ops.as_object().expect("operations") {
                if op["security"] == serde_json::json!([]) || !path.starts_with("/v1/") {
                    continue;
                }
                let responses = op["responses"].as_object().expect("responses");
                assert!(responses.contains_key("401"), "{method} {path}: no 401");
                assert!(responses.contains_key("403"), "{method} {path}: no 403");
            }
        }
    }
}
