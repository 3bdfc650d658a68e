//! One error format on every path: a path no route knows answers the JSON error
//! with 404, a wrong method the JSON error with 405 and `Allow`, while a gRPC call
//! to an unknown service or method still gets the gRPC status UNIMPLEMENTED; an
//! Admin gRPC error carries its code in the standard details (`ErrorInfo`).

use mkondo_proto::v1::admin_client::AdminClient;
use mkondo_proto::v1::GetUserRequest;
use mkondo_tests::TestServer;
use reqwest::header::{ALLOW, CONTENT_TYPE};
use serde_json::Value;
use tonic::Code;
use tonic_types::StatusExt as _;

/// Checks the SPEC's error body and returns it.
async fn json_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "{response:?}");
    let ct = response.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(ct.starts_with("application/json"), "content-type {ct}");
    assert!(response.headers().get("grpc-status").is_none());
    let body: Value = response.json().await.expect("a JSON body");
    let error = &body["error"];
    assert_eq!(error["code"], code, "{body}");
    assert!(!error["message"].as_str().unwrap().is_empty(), "{body}");
    assert!(!error["request_id"].as_str().unwrap().is_empty(), "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_answer_the_json_error() {
    let server = TestServer::start_default().await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", server.addr);
    for path in [
        "/nope",
        "/v1/nope",
        "/v1/users/alice/nope",
        "/mkondo.v1.Admin",
    ] {
        let get = http.get(format!("{base}{path}")).send().await.unwrap();
        json_error(get, 404, "not_found").await;
        let post = http
            .post(format!("{base}{path}"))
            .bearer_auth(&server.app.api_key)
            .json(&serde_json::json!({"x": 1}))
            .send()
            .await
            .unwrap();
        json_error(post, 404, "not_found").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_method_answers_405_with_allow_and_the_json_error() {
    let server = TestServer::start_default().await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", server.addr);
    let cases = [
        (reqwest::Method::DELETE, "/healthz", &["GET"][..]),
        (reqwest::Method::PUT, "/v1/users", &["GET", "POST"][..]),
        (reqwest::Method::POST, "/v1/openapi.json", &["GET"][..]),
    ];
    for (method, path, allowed) in cases {
        let response = http
            .request(method.clone(), format!("{base}{path}"))
            .bearer_auth(&server.app.api_key)
            .send()
            .await
            .unwrap();
        let allow = response
            .headers()
            .get(ALLOW)
            .unwrap_or_else(|| panic!("{method} {path}: no Allow header"))
            .to_str()
            .unwrap()
            .to_owned();
        for want in allowed {
            assert!(
                allow.split(',').any(|m| m.trim() == *want),
                "{method} {path}: Allow {allow:?} lacks {want}"
            );
        }
        let body = json_error(response, 405, "invalid_argument").await;
        assert_eq!(body["error"]["reason"], "method_not_allowed", "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_grpc_methods_still_get_grpc_unimplemented() {
    let server = TestServer::start_default().await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    // A service no route knows, and an unknown method of a known service.
    for path in ["/mkondo.v1.Nope/GetUser", "/mkondo.v1.Admin/Nope"] {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let codec = tonic_prost::ProstCodec::<GetUserRequest, GetUserRequest>::default();
        let status = grpc
            .unary(
                tonic::Request::new(GetUserRequest { id: "alice".into() }),
                path.parse().unwrap(),
                codec,
            )
            .await
            .expect_err(path);
        assert_eq!(status.code(), Code::Unimplemented, "{path}: {status:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_grpc_errors_carry_the_code_in_the_details() {
    let server = TestServer::start_default().await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut admin = AdminClient::new(channel);
    let mut request = tonic::Request::new(GetUserRequest {
        id: "nobody-here".into(),
    });
    let bearer = format!("Bearer {}", server.app.api_key);
    request
        .metadata_mut()
        .insert("authorization", bearer.parse().unwrap());
    let status = admin.get_user(request).await.expect_err("no such user");
    assert_eq!(status.code(), Code::NotFound);
    let details = status.get_error_details();
    let info = details.error_info().expect("an ErrorInfo in the details");
    assert_eq!(info.reason, "not_found");
    assert_eq!(info.domain, "mkondo");
    let code = status.metadata().get("mkondo-error-code").unwrap();
    assert_eq!(code.to_str().unwrap(), "not_found");

    // Without credentials: the reason travels in the ErrorInfo's metadata.
    let mut admin = AdminClient::new(
        tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let status = admin
        .get_user(GetUserRequest { id: "alice".into() })
        .await
        .expect_err("no API key");
    assert_eq!(status.code(), Code::Unauthenticated);
    let info = status
        .get_details_error_info()
        .expect("an ErrorInfo in the details");
    assert_eq!(info.reason, "unauthenticated");
    assert_eq!(info.domain, "mkondo");
    assert_eq!(
        info.metadata.get("reason").map(String::as_str),
        Some("missing_credentials")
    );
}
