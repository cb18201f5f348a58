//! The interface as machines read it, held to what the service really does (real broker, real
//! database): every MQTT payload the service publishes in the headline stories validates
//! against its JSON Schema in `docs/schemas/`, and so does every sighting and status report the
//! tests send; payloads the schemas refuse are refused by the service too; the router serves
//! exactly the routes `docs/openapi.json` lists, and the main endpoints' real answers validate
//! against its response schemas.
//!
//! Each payload is checked twice: against the schema as shipped (what a consumer runs), and
//! against a strict copy that refuses properties the schema does not name, so that a field the
//! service publishes cannot go undocumented.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(30);
const OPENAPI: &str = include_str!("../docs/openapi.json");
/// The router's source: the routes it registers are read from it.
const ROUTER: &str = include_str!("../src/api/http.rs");

/// Every schema in `docs/schemas/`, by file name.
const SCHEMAS: [(&str, &str); 7] = [
    (
        "sighting.schema.json",
        include_str!("../docs/schemas/sighting.schema.json"),
    ),
    (
        "status-report.schema.json",
        include_str!("../docs/schemas/status-report.schema.json"),
    ),
    (
        "task.schema.json",
        include_str!("../docs/schemas/task.schema.json"),
    ),
    (
        "task-update.schema.json",
        include_str!("../docs/schemas/task-update.schema.json"),
    ),
    (
        "alert.schema.json",
        include_str!("../docs/schemas/alert.schema.json"),
    ),
    (
        "escalation.schema.json",
        include_str!("../docs/schemas/escalation.schema.json"),
    ),
    (
        "dead-letter.schema.json",
        include_str!("../docs/schemas/dead-letter.schema.json"),
    ),
];

fn schema_file(name: &str) -> Value {
    let (_, text) = SCHEMAS
        .iter()
        .find(|(file, _)| *file == name)
        .unwrap_or_else(|| panic!("no schema {name}"));
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
}

fn openapi() -> Value {
    serde_json::from_str(OPENAPI).expect("docs/openapi.json is JSON")
}

/// The schema of what the service publishes on `topic` (without prefix).
fn schema_for_topic(topic: &str) -> Option<&'static str> {
    let parts: Vec<&str> = topic.split('/').collect();
    match parts.as_slice() {
        ["dispatch", _, "tasks"] => Some("task.schema.json"),
        ["dispatch", _, "updates"] => Some("task-update.schema.json"),
        ["dispatch", _, "escalations"] => Some("escalation.schema.json"),
        ["alerts", _] => Some("alert.schema.json"),
        ["deadletter", "sightings" | "status"] => Some("dead-letter.schema.json"),
        _ => None,
    }
}

/// `schema` with every local `$ref` replaced by what it points to in `root` (siblings of the
/// `$ref` win, as its description does).
fn inline(root: &Value, schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out = Map::new();
            if let Some(Value::String(pointer)) = map.get("$ref") {
                let local = pointer
                    .strip_prefix('#')
                    .unwrap_or_else(|| panic!("{pointer} is not a local reference"));
                let target = root
                    .pointer(local)
                    .unwrap_or_else(|| panic!("{pointer} points at nothing"));
                if let Value::Object(target) = inline(root, target) {
                    out.extend(target);
                }
            }
            for (key, value) in map {
                if key != "$ref" {
                    out.insert(key.clone(), inline(root, value));
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| inline(root, v)).collect()),
        other => other.clone(),
    }
}

/// An inlined schema made strict: the `allOf` members that only add properties are merged
/// into their object, and every object schema refuses properties it does not name.
fn strict(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out: Map<String, Value> =
                map.iter().map(|(k, v)| (k.clone(), strict(v))).collect();
            if let Some(Value::Array(members)) = out.remove("allOf") {
                let mut kept = Vec::new();
                for member in members {
                    let Value::Object(member) = member else {
                        kept.push(member);
                        continue;
                    };
                    if member.contains_key("if") {
                        kept.push(Value::Object(member));
                        continue;
                    }
                    for (key, value) in member {
                        match (key.as_str(), out.get_mut(&key), value) {
                            ("properties", Some(Value::Object(mine)), Value::Object(theirs)) => {
                                for (name, property) in theirs {
                                    mine.entry(name).or_insert(property);
                                }
                            }
                            ("required", Some(Value::Array(mine)), Value::Array(theirs)) => {
                                for name in theirs {
                                    if !mine.contains(&name) {
                                        mine.push(name);
                                    }
                                }
                            }
                            (_, Some(_), _) => {}
                            (_, None, value) => {
                                out.insert(key, value);
                            }
                        }
                    }
                }
                if !kept.is_empty() {
                    out.insert("allOf".into(), Value::Array(kept));
                }
            }
            let is_object = out.get("type") == Some(&json!("object"));
            if is_object && out.contains_key("properties") {
                out.entry("additionalProperties").or_insert(json!(false));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(strict).collect()),
        other => other.clone(),
    }
}

/// A validator of draft 2020-12 that also checks formats (`date-time`, `date`).
fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(schema)
        .unwrap_or_else(|e| panic!("not a usable schema: {e}\n{schema:#}"))
}

fn errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// One published or sent shape: the schema as shipped and its strict copy.
struct Shape {
    name: String,
    shipped: jsonschema::Validator,
    strict: jsonschema::Validator,
}

impl Shape {
    /// A schema file of `docs/schemas/`.
    fn file(name: &str) -> Shape {
        let doc = schema_file(name);
        Shape {
            name: name.to_string(),
            shipped: validator(&doc),
            strict: validator(&strict(&inline(&doc, &doc))),
        }
    }

    /// A schema of the OpenAPI document (`$ref`s into its components).
    fn openapi(name: &str, schema: &Value) -> Shape {
        let doc = openapi();
        let inlined = inline(&doc, schema);
        Shape {
            name: name.to_string(),
            shipped: validator(&inlined),
            strict: validator(&strict(&inlined)),
        }
    }

    /// Panics unless `instance` is valid, as shipped and strictly.
    fn assert_valid(&self, instance: &Value, what: &str) {
        let found = errors(&self.shipped, instance);
        assert!(
            found.is_empty(),
            "{what} does not validate against {}: {found:#?}\n{instance:#}",
            self.name
        );
        let found = errors(&self.strict, instance);
        assert!(
            found.is_empty(),
            "{what} has properties {} does not document: {found:#?}\n{instance:#}",
            self.name
        );
    }

    /// Panics if `instance` is valid as shipped.
    fn assert_invalid(&self, instance: &Value, what: &str) {
        assert!(
            !self.shipped.is_valid(instance),
            "{what} should be refused by {}: {instance:#}",
            self.name
        );
    }
}

// ---------------------------------------------------------------------------------------
// The documents themselves
// ---------------------------------------------------------------------------------------

#[test]
fn every_schema_is_valid_draft_2020_12_and_shared_shapes_agree_with_the_openapi_document() {
    let api = openapi();
    assert_eq!(api["openapi"], "3.1.0");
    let components = api["components"]["schemas"]
        .as_object()
        .expect("components.schemas");
    for (name, schema) in components {
        let mut schema = schema.clone();
        schema["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
        if let Err(e) = jsonschema::meta::validate(&schema) {
            panic!("components.schemas.{name} is not a valid schema: {e}");
        }
    }
    for (file, _) in SCHEMAS {
        let doc = schema_file(file);
        assert_eq!(
            doc["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{file}"
        );
        if let Err(e) = jsonschema::meta::validate(&doc) {
            panic!("{file} is not a valid schema: {e}");
        }
        // A shape named the same in a schema file and in the OpenAPI document is one shape.
        for (name, def) in doc["$defs"].as_object().into_iter().flatten() {
            let component = components
                .get(name)
                .unwrap_or_else(|| panic!("{file}: $defs.{name} is not in the OpenAPI document"));
            assert_eq!(
                inline(&doc, def),
                inline(&api, component),
                "{file}: $defs.{name} differs from components.schemas.{name}"
            );
        }
    }
    // The HTTP status report is the MQTT one, its task_id optional (the path names the task).
    let report = schema_file("status-report.schema.json");
    let http_report = inline(&api, &components["StatusReport"]);
    assert_eq!(
        inline(&report, &report["properties"]),
        http_report["properties"]
    );
    assert_eq!(report["required"], json!(["task_id", "status"]));
    assert_eq!(http_report["required"], json!(["status"]));
    // An escalation is the Task it escalates.
    let task = schema_file("task.schema.json");
    let escalation = schema_file("escalation.schema.json");
    assert_eq!(task["$defs"], escalation["$defs"]);
    assert_eq!(task["$ref"], escalation["$ref"]);
}

/// The contract's own examples (docs/contract.md) validate; what they say is refused is.
#[test]
fn the_contract_examples_validate_and_broken_ones_do_not() {
    let sighting = Shape::file("sighting.schema.json");
    let example = json!({
        "event_id": "cixi-cam-0042-20241203-000123", "kind": "vehicle", "plate": "浙B·12345",
        "person_id": null, "lat": 30.1703, "lon": 121.2661, "datum": "wgs84",
        "observed_at": "2024-12-03T10:15:00+08:00", "source": "cixi-cam-0042", "confidence": 0.93
    });
    sighting.assert_valid(&example, "the contract's sighting");
    for (field, value) in [
        ("kind", json!("boat")),
        ("plate", Value::Null),
        ("lat", json!(91.0)),
        ("datum", json!("osgb36")),
        ("observed_at", json!("yesterday")),
        ("source", json!("cam/1")),
        ("confidence", json!(1.5)),
        ("event_id", json!("  ")),
    ] {
        let mut broken = example.clone();
        broken[field] = value;
        sighting.assert_invalid(&broken, &format!("a sighting with a bad {field}"));
    }
    let report = Shape::file("status-report.schema.json");
    report.assert_valid(
        &json!({"task_id": "t-1", "status": "acknowledged", "at": "2024-12-03T02:20:00Z", "by": "cixi-officer-07", "note": ""}),
        "the contract's status report",
    );
    report.assert_invalid(
        &json!({"task_id": "t-1", "status": "cancelled"}),
        "a report of a status only the service sets",
    );
    let dead = Shape::file("dead-letter.schema.json");
    dead.assert_valid(
        &json!({"reason": "too_large", "detail": "...", "payload": null, "payload_base64": "eyJldmVudF9pZCI6",
                "topic": "sightings/cam-7", "truncated": true, "payload_bytes": 2000000,
                "payload_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}),
        "the contract's truncated dead letter",
    );
    dead.assert_invalid(
        &json!({"reason": "too_large", "detail": "...", "payload": null, "topic": "sightings/cam-7", "truncated": true}),
        "a truncated dead letter without its length and digest",
    );
}

/// `(METHOD, path)` of every `.route("path", ...)` in the router's source.
fn routes_in_source(source: &str) -> BTreeSet<(String, String)> {
    const OPEN: &str = ".route(";
    let mut routes = BTreeSet::new();
    for (at, _) in source.match_indices(OPEN) {
        let rest = source[at + OPEN.len()..].trim_start();
        let rest = rest
            .strip_prefix('"')
            .unwrap_or_else(|| panic!("a route whose path is not a literal: {rest:.60}"));
        let path_end = rest.find('"').expect("a closing quote");
        let path = &rest[..path_end];
        // The method router: up to the parenthesis that closes `.route(`.
        let mut depth = 1;
        let close = rest
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map(|(i, _)| i)
            .expect("a closing parenthesis");
        let methods = &rest[path_end..close];
        let mut found = false;
        for method in ["get", "post", "put", "delete", "patch"] {
            for (i, _) in methods.match_indices(&format!("{method}(")) {
                let before = methods[..i].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                routes.insert((method.to_uppercase(), path.to_string()));
                found = true;
            }
        }
        assert!(found, "no method found for route {path}");
    }
    assert!(routes.len() > 10, "too few routes found: {routes:?}");
    routes
}

fn routes_in_openapi(api: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in api["paths"].as_object().expect("paths") {
        for method in [
            "get", "put", "post", "delete", "patch", "head", "options", "trace",
        ] {
            if item.get(method).is_some() {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

/// The path with its `{parameters}` filled with ids that exist nowhere; the event stream's
/// with an id it refuses, so that it answers at once instead of streaming.
fn concrete(path: &str) -> String {
    if path == "/api/v1/events" {
        return format!("{path}?last_event_id=nowhere");
    }
    path.replace("{target_id}", "T-nowhere")
        .replace("{task_id}", "task-nowhere")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_serves_exactly_the_routes_the_openapi_document_lists() {
    let api = openapi();
    let documented = routes_in_openapi(&api);
    let registered = routes_in_source(ROUTER);
    assert_eq!(
        documented, registered,
        "docs/openapi.json and src/api/http.rs disagree on the routes"
    );
    let h = Harness::start(&Backend::Embedded).await;
    let error = Shape::openapi("Error", &json!({"$ref": "#/components/schemas/Error"}));
    let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    for path in paths {
        for method in ["GET", "PUT", "POST", "DELETE", "PATCH"] {
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            let (status, body) = h.request(m, &concrete(path), None).await;
            let served = documented.contains(&(method.to_string(), path.clone()));
            let what = format!("{method} {path}: {status} {body}");
            if served {
                // Answered by its handler: not the router's "no such route" or "no such method".
                assert_ne!(status, 405, "{what}");
                assert!(
                    !(status == 404 && body["detail"] == "no such resource"),
                    "{what}"
                );
            } else {
                assert_eq!(status, 405, "{what}");
                error.assert_valid(&body, &what);
                assert_eq!(body["error"], "method_not_allowed", "{what}");
            }
        }
    }
    let (status, body) = h.get("/api/v1/no-such-thing").await;
    assert_eq!(status, 404);
    error.assert_valid(&body, "an unknown path's answer");
    // The document is served as shipped, without a token.
    let (status, served) = h
        .request_as(None, Method::GET, "/api/v1/openapi.json", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(served, api);
}

/// A body that never completes gets the documented 408; a body over the limit the 413.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_oversized_bodies_answer_the_documented_errors() {
    let h = Harness::start_with(&Backend::Embedded, |c| {
        c.http_limits.request_timeout = Duration::from_secs(2);
    })
    .await;
    let api = Api::new();
    let addr = h.http.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/v1/tasks/t-1/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{{",
        h.token
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("answered in time")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let (_, body) = answer.split_once("\r\n\r\n").expect("a body");
    let body: Value = serde_json::from_str(body.trim()).expect("a JSON body");
    api.check(
        "POST",
        "/api/v1/tasks/{task_id}/status",
        408,
        &body,
        "a slow body",
    );

    let big = json!({"status": "acknowledged", "note": "x".repeat(2_200_000)}).to_string();
    let response = h
        .http_client()
        .post(format!("{}/api/v1/tasks/t-1/status", h.http))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status().as_u16(), 413);
    let body: Value = response.json().await.expect("a JSON body");
    api.check(
        "POST",
        "/api/v1/tasks/{task_id}/status",
        413,
        &body,
        "a body over the limit",
    );
}

// ---------------------------------------------------------------------------------------
// Real answers against the OpenAPI document
// ---------------------------------------------------------------------------------------

/// The OpenAPI document, to check answers against.
struct Api {
    doc: Value,
}

impl Api {
    fn new() -> Api {
        Api { doc: openapi() }
    }

    /// The documented answer of `method path` with `status`; panics when there is none.
    fn response(&self, method: &str, path: &str, status: u16) -> Value {
        let operation = &self.doc["paths"][path][method.to_lowercase()];
        assert!(operation.is_object(), "{method} {path} is not documented");
        let response = &operation["responses"][status.to_string()];
        assert!(
            response.is_object(),
            "{method} {path} does not document status {status}"
        );
        inline(&self.doc, response)
    }

    /// Checks a JSON answer against the documented one, as shipped and strictly.
    fn check(&self, method: &str, path: &str, status: u16, body: &Value, what: &str) {
        let response = self.response(method, path, status);
        let schema = &response["content"]["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "{method} {path} {status} documents no JSON body"
        );
        Shape::openapi(&format!("{method} {path} {status}"), schema)
            .assert_valid(body, &format!("{what} ({method} {path} {status})"));
    }

    /// The documented path `path` (without its query) is an instance of.
    fn template_of(&self, path: &str) -> String {
        let path = path.split('?').next().unwrap_or(path);
        let segments: Vec<&str> = path.split('/').collect();
        let matches = |template: &str| {
            let parts: Vec<&str> = template.split('/').collect();
            parts.len() == segments.len()
                && parts
                    .iter()
                    .zip(&segments)
                    .all(|(t, s)| t == s || (t.starts_with('{') && t.ends_with('}')))
        };
        self.doc["paths"]
            .as_object()
            .expect("paths")
            .keys()
            .find(|t| matches(t))
            .unwrap_or_else(|| panic!("{path} is an instance of no documented path"))
            .clone()
    }

    /// The schema of a request body, to check what the tests send.
    fn request_body(&self, method: &str, path: &str) -> Shape {
        let operation = &self.doc["paths"][path][method.to_lowercase()];
        let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
        assert!(schema.is_object(), "{method} {path} documents no JSON body");
        Shape::openapi(&format!("{method} {path} request"), schema)
    }
}

/// Calls the service and checks both sides of the exchange against the OpenAPI document.
struct Caller<'a> {
    h: &'a Harness,
    api: &'a Api,
}

impl Caller<'_> {
    /// Sends `method path` as `token`; checks the body it sends against the documented request,
    /// that the answer has status `expected`, and the answer against the documented response
    /// of that status.
    async fn call(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
        expected: u16,
    ) -> Value {
        let template = self.api.template_of(path);
        if let Some(body) = &body {
            self.api
                .request_body(method, &template)
                .assert_valid(body, &format!("the body sent to {method} {template}"));
        }
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let (status, answer) = self.h.request_as(Some(token), m, path, body).await;
        let backend = self.h.backend.name();
        assert_eq!(status, expected, "[{backend}] {method} {path}: {answer}");
        self.api.check(
            method,
            &template,
            status,
            &answer,
            &format!("[{backend}] {path}"),
        );
        answer
    }

    /// As [`call`](Self::call), with the harness's admin token.
    async fn admin(&self, method: &str, path: &str, body: Option<Value>, expected: u16) -> Value {
        self.call(&self.h.token, method, path, body, expected).await
    }
}

// ---------------------------------------------------------------------------------------
// The headline stories
// ---------------------------------------------------------------------------------------

fn report(task_id: &str, status: &str, at: chrono::DateTime<chrono::Utc>) -> Value {
    json!({"task_id": task_id, "status": status, "at": at.to_rfc3339(), "by": "officer-07", "note": format!("{status} note")})
}

/// Sighting payloads each schema and the service refuse, with the dead letter's reason.
fn refused_sightings(now: chrono::DateTime<chrono::Utc>) -> Vec<(Value, &'static str)> {
    let good = |id: &str| vehicle_sighting(id, "cam", "浙B12345", CIXI.0, CIXI.1);
    let with = |id: &str, field: &str, value: Value| {
        let mut s = good(id);
        s[field] = value;
        s
    };
    let mut missing = good("unused");
    missing.as_object_mut().unwrap().remove("event_id");
    vec![
        (missing, "missing_field"),
        (with("bad-kind", "kind", json!("boat")), "unknown_kind"),
        (with("bad-lat", "lat", json!(91.0)), "invalid_coordinates"),
        (
            with("bad-confidence", "confidence", json!(1.5)),
            "invalid_confidence",
        ),
        (
            with("bad-time", "observed_at", json!("yesterday")),
            "invalid_time",
        ),
        (
            with("future", "observed_at", json!("2099-01-01T00:00:00Z")),
            // The schema cannot know the service's clock: checked by the service only.
            "future_time",
        ),
        (with("no-plate", "plate", Value::Null), "missing_field"),
        (
            json!({"event_id": "bad-person", "kind": "person", "person_id": "12345",
                   "lat": CIXI.0, "lon": CIXI.1, "observed_at": now.to_rfc3339()}),
            "invalid_person_id",
        ),
    ]
}

/// The tasks of the stories, as Cixi's and Yuyao's command centers received them.
struct Tasks {
    /// The headline car's, at Cixi.
    headline: Value,
    /// The second car's (read with an OCR confusion), at Cixi; never acknowledged.
    second: Value,
    /// Yang's (Cixi's debtor seen in Yuyao), at Yuyao; never acknowledged.
    person: Value,
}

fn id_of(task: &Value) -> &str {
    task["task_id"].as_str().expect("a task_id")
}

/// The headline car, a second car of Yuyao's, and Yang (Cixi's debtor, domicile in Yuyao).
async fn flag_targets(c: &Caller<'_>) {
    let mut headline = headline_target();
    let path = "/api/v1/targets/T-2024-0001";
    c.admin("PUT", path, Some(headline.clone()), 201).await;
    headline["name"] = json!("王某某");
    c.admin("PUT", path, Some(headline), 200).await;
    let batch = json!([vehicle_target("T-2", "浙B22222", "yuyao")]);
    c.admin("POST", "/api/v1/targets:batch", Some(batch), 200)
        .await;
    let yang = json!({"target_id": "T-YANG", "kind": "person", "person_id": "330281198001011230", "name": "杨某",
        "cases": [{"case_no": "(2024)浙0282执555号", "court_id": "cixi", "filed_on": "2024-04-01", "amount_cny": 30000}],
        "known_locations": [{"label": "work", "lat": CIXI.0, "lon": CIXI.1}, {"label": "domicile", "lat": YUYAO.0, "lon": YUYAO.1}]});
    c.admin("PUT", "/api/v1/targets/T-YANG", Some(yang), 201)
        .await;
    let view = c
        .admin(
            "GET",
            &format!("{path}?purpose=interface%20test"),
            None,
            200,
        )
        .await;
    assert_eq!(view["expired"], false);
}

/// Hits become tasks (and alerts to the requesting courts), a second sighting an update, an
/// acknowledgement an update and an alert.
async fn hits_and_a_status_report(h: &Harness) -> Tasks {
    let name = h.backend.name();
    let sighting = Shape::file("sighting.schema.json");
    let sent = |id: &str, plate: &str| vehicle_sighting(id, "cam", plate, CIXI.0, CIXI.1);
    for payload in [
        sent("s-1", "浙B·12345"),
        sent("s-2", "浙B12345"),
        sent("s-3", "浙B2222Z"),
    ] {
        sighting.assert_valid(&payload, "a sighting the test sends");
        h.sighting("cam", payload).await;
    }
    let person = json!({"event_id": "p-1", "kind": "person", "person_id": "330281198001011230",
        "lat": YUYAO.0, "lon": YUYAO.1, "datum": "wgs84", "observed_at": h.now().to_rfc3339(), "source": "hotel-9"});
    sighting.assert_valid(&person, "a person sighting the test sends");
    h.sighting("hotel-9", person).await;
    let at_cixi = h.wait_for("dispatch/cixi/tasks", 2, WAIT).await;
    let task_of = |target: &str| {
        at_cixi
            .iter()
            .find(|t| t.body["target_id"] == target)
            .unwrap_or_else(|| panic!("[{name}] no task for {target}: {at_cixi:#?}"))
            .body
            .clone()
    };
    let tasks = Tasks {
        headline: task_of("T-2024-0001"),
        second: task_of("T-2"),
        person: h.wait_for("dispatch/yuyao/tasks", 1, WAIT).await[0]
            .body
            .clone(),
    };
    // Read with an OCR confusion (Z for 2): the extension fields are published too.
    assert_eq!(tasks.second["fuzzy"], true, "[{name}] {}", tasks.second);
    assert_eq!(tasks.second["read_plate"], "浙B2222Z", "[{name}]");
    assert_eq!(tasks.person["kind"], "person_locate", "[{name}]");
    h.wait_for("dispatch/cixi/updates", 1, WAIT).await;

    let ack = report(id_of(&tasks.headline), "acknowledged", h.now());
    Shape::file("status-report.schema.json").assert_valid(&ack, "a status report the test sends");
    h.publish("dispatch/cixi/status", ack.to_string()).await;
    h.wait_for("dispatch/cixi/updates", 2, WAIT).await;
    tasks
}

/// Reasons of the dead letters on `topic`, sorted, once `count` have come.
async fn dead_letter_reasons(h: &Harness, topic: &str, count: usize) -> Vec<String> {
    let letters = h.wait_for(topic, count, WAIT).await;
    let mut reasons: Vec<String> = letters
        .iter()
        .map(|l| l.body["reason"].as_str().unwrap_or("?").to_string())
        .collect();
    reasons.sort();
    reasons
}

/// Refused input: each refused by the schema (where it can tell) and by the service, which
/// answers with a dead letter of the expected reason.
async fn refused_input(h: &Harness, tasks: &Tasks) {
    let name = h.backend.name();
    let sighting = Shape::file("sighting.schema.json");
    let refused = refused_sightings(h.now());
    for (payload, reason) in &refused {
        if *reason != "future_time" {
            sighting.assert_invalid(payload, &format!("a sighting refused as {reason}"));
        }
        h.sighting("cam", payload.clone()).await;
    }
    h.publish("sightings/cam", vec![0xff, 0xfe, b'{']).await;
    let mut expected: Vec<&str> = refused
        .iter()
        .map(|(_, r)| *r)
        .chain(["not_json"])
        .collect();
    expected.sort();
    let reasons = dead_letter_reasons(h, "deadletter/sightings", expected.len()).await;
    assert_eq!(reasons, expected, "[{name}]");
    assert!(
        h.on("deadletter/sightings")
            .iter()
            .any(|l| l.body["payload"].is_null() && l.body["payload_base64"].is_string()),
        "[{name}] the payload that is not UTF-8 came back in base64"
    );

    let report_schema = Shape::file("status-report.schema.json");
    let headline = id_of(&tasks.headline);
    let bad_reports = [
        json!({"task_id": headline, "status": "teleported"}),
        json!({"task_id": headline, "status": "en_route", "note": "x".repeat(2001)}),
        json!({"status": "en_route"}),
    ];
    for bad in &bad_reports {
        report_schema.assert_invalid(bad, "a status report refused as invalid_report");
        h.publish("dispatch/cixi/status", bad.to_string()).await;
    }
    // Valid by the schema, refused by the rules: Yuyao does not hold Cixi's task.
    let foreign = report(headline, "seized", h.now());
    report_schema.assert_valid(&foreign, "another court's report");
    h.publish("dispatch/yuyao/status", foreign.to_string())
        .await;
    let reasons = dead_letter_reasons(h, "deadletter/status", bad_reports.len() + 1).await;
    let expected = [
        "invalid_report",
        "invalid_report",
        "invalid_report",
        "refused",
    ];
    assert_eq!(reasons, expected, "[{name}]");
}

/// The HTTP side of the same tasks, by a court and by an admin.
async fn http_answers(c: &Caller<'_>, tasks: &Tasks) {
    let (h, name) = (c.h, c.h.backend.name());
    let cixi = h.token("interface cixi", "court:cixi").await;
    let headline = id_of(&tasks.headline);
    let en_route = json!({"status": "en_route", "by": "officer-07", "note": ""});
    let path = format!("/api/v1/tasks/{headline}/status");
    let updated = c.call(&cixi, "POST", &path, Some(en_route), 200).await;
    assert_eq!(updated["status"], "en_route");
    let list = c
        .admin("GET", "/api/v1/tasks?court_id=cixi&limit=10", None, 200)
        .await;
    // Cixi holds two and requested Yang's.
    assert_eq!(list["count"], 3, "[{name}] {list}");
    c.call(&cixi, "GET", "/api/v1/tasks?status=en_route", None, 200)
        .await;
    let path = format!("/api/v1/tasks/{headline}");
    let detail = c.admin("GET", &path, None, 200).await;
    let history = detail["history"].as_array().map_or(0, Vec::len);
    assert!(history >= 3, "[{name}] {detail}");
    let swept = c
        .admin("GET", "/api/v1/targets?court_id=yuyao", None, 200)
        .await;
    assert!(swept["count"].as_u64() >= Some(1), "[{name}] {swept}");
    let near = format!("/api/v1/targets?near={},{}&radius_km=5", YUYAO.0, YUYAO.1);
    c.admin("GET", &near, None, 200).await;
    let search = json!({"target_id": "T-YANG"});
    let again = c
        .call(&cixi, "POST", "/api/v1/locate-requests", Some(search), 200)
        .await;
    assert_eq!(
        again["task_id"], tasks.person["task_id"],
        "[{name}] the open task is answered"
    );
    let withdrawn = c.admin("DELETE", "/api/v1/targets/T-2", None, 200).await;
    assert_eq!(withdrawn["cancelled_tasks"], 1, "[{name}]");
    // The withdrawal's update reaches the court that held the task.
    h.wait_for("dispatch/cixi/updates", 4, WAIT).await;
    let path = format!("/api/v1/tasks/{}/status", id_of(&tasks.second));
    c.admin("POST", &path, Some(json!({"status": "seized"})), 409)
        .await;
    let audit = c.admin("GET", "/api/v1/audit?limit=5", None, 200).await;
    assert_eq!(audit["count"], 5, "[{name}]");
    assert!(audit["next"].is_i64(), "[{name}] a full page carries next");
    let courts = c.call(&cixi, "GET", "/api/v1/courts", None, 200).await;
    let count = courts["courts"].as_array().map_or(0, Vec::len);
    assert!(count > 5, "[{name}] {courts}");
    c.admin("GET", "/healthz", None, 200).await;
    c.admin("GET", "/readyz", None, 200).await;

    // Errors in the documented shape, with the documented statuses.
    let ops = h.token("interface ops", "ops").await;
    c.call(&ops, "GET", "/api/v1/tasks", None, 403).await;
    c.call(&cixi, "GET", "/api/v1/audit", None, 403).await;
    c.call("lr_not-a-token", "GET", "/api/v1/tasks", None, 401)
        .await;
    c.admin("GET", "/api/v1/tasks/task-nowhere", None, 404)
        .await;
    c.admin("GET", "/api/v1/targets/T-2024-0001", None, 400)
        .await;
    c.admin("GET", "/api/v1/tasks?status=teleported", None, 400)
        .await;
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/tasks", h.http))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let challenge = c.api.response("GET", "/api/v1/tasks", 401);
    let documented = &challenge["headers"]["WWW-Authenticate"]["schema"]["const"];
    assert_eq!(
        response.headers()["www-authenticate"],
        documented.as_str().unwrap()
    );
}

/// Every message the service published: each on a topic with a schema, each valid, every
/// kind of message and of alert among them.
fn everything_published_is_documented(h: &Harness) {
    let name = h.backend.name();
    let seen = h.seen.lock().unwrap().clone();
    let mut files = BTreeSet::new();
    for message in &seen {
        let topic = &message.topic;
        let file = schema_for_topic(topic)
            .unwrap_or_else(|| panic!("[{name}] {topic} has no schema in docs/schemas/"));
        let body: Value = serde_json::from_slice(&message.raw)
            .unwrap_or_else(|e| panic!("[{name}] {topic} published non-JSON: {e}"));
        Shape::file(file).assert_valid(&body, &format!("[{name}] a message on {topic}"));
        files.insert(file);
    }
    assert_eq!(
        files.len(),
        5,
        "[{name}] the stories published every kind of message: {files:?}"
    );
    let alert_kinds: BTreeSet<&str> = seen
        .iter()
        .filter(|m| m.topic.starts_with("alerts/"))
        .filter_map(|m| m.body["kind"].as_str())
        .collect();
    let every = [
        "consolidation_proposed",
        "escalated",
        "target_sighted",
        "task_status",
    ];
    assert_eq!(alert_kinds, BTreeSet::from(every), "[{name}]");
    eprintln!("[{name}] {} published messages validated", seen.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_published_payload_and_every_answer_matches_the_documents() {
    for backend in backends() {
        let name = backend.name();
        let h = Harness::start_manual(&backend, |c| {
            c.deadlines.ack = chrono::Duration::seconds(300);
            c.deadlines.resolve = chrono::Duration::seconds(1800);
        })
        .await;
        let api = Api::new();
        let c = Caller { h: &h, api: &api };
        flag_targets(&c).await;
        let tasks = hits_and_a_status_report(&h).await;
        refused_input(&h, &tasks).await;

        // Unacknowledged tasks (the second car's, Yang's) -> escalations to the supervising
        // court, and alerts.
        h.advance(Duration::from_secs(301));
        let escalations = h
            .wait_for("dispatch/ningbo_intermediate/escalations", 2, WAIT)
            .await;
        let escalated: BTreeSet<&str> = escalations
            .iter()
            .filter_map(|e| e.body["task_id"].as_str())
            .collect();
        let unacknowledged = BTreeSet::from([id_of(&tasks.second), id_of(&tasks.person)]);
        assert_eq!(escalated, unacknowledged, "[{name}]");

        http_answers(&c, &tasks).await;

        // A case of the same car at another court: a consolidation proposal to the
        // supervising court, and the target's view shows the link.
        let related = json!({"target_id": "T-LINK", "kind": "vehicle", "plate": "浙B12345",
            "cases": [{"case_no": "(2024)浙0282执9号", "court_id": "cixi", "filed_on": "2024-01-20"}]});
        c.admin("PUT", "/api/v1/targets/T-LINK", Some(related), 201)
            .await;
        h.wait_for("alerts/ningbo_intermediate", 1, WAIT).await;
        let path = "/api/v1/targets/T-LINK?purpose=interface%20test";
        let view = c.admin("GET", path, None, 200).await;
        assert!(view["linked"].is_object(), "[{name}] {view}");

        everything_published_is_documented(&h);
    }
}
