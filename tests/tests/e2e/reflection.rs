//! gRPC server reflection answers in both versions clients speak: `v1` (grpcurl
//! tries it first) and `v1alpha` (the only one Python's `grpcio-reflection` and
//! several GUI clients know). Each lists every Mkondo service and serves the file
//! that defines one, against the real binary.

use mkondo_tests::TestServer;
use tonic::transport::Channel;

const SERVICES: [&str; 2] = ["mkondo.v1.Admin", "mkondo.v1.Realtime"];

async fn channel(server: &TestServer) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .expect("gRPC connection")
}

/// Asks one version of the reflection service the same two questions, with the
/// types of that version (generated separately, so one macro over both modules).
macro_rules! ask {
    ($version:ident, $channel:expr) => {{
        use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;
        use tonic_reflection::pb::$version::ServerReflectionRequest;

        let requests = [
            MessageRequest::ListServices(String::new()),
            MessageRequest::FileContainingSymbol("mkondo.v1.Admin".into()),
        ]
        .map(|m| ServerReflectionRequest {
            host: String::new(),
            message_request: Some(m),
        });
        let mut answers = ServerReflectionClient::new($channel)
            .server_reflection_info(tokio_stream::iter(requests))
            .await
            .unwrap_or_else(|s| panic!("{}: {s:?}", stringify!($version)))
            .into_inner();
        let first = answers.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
            panic!("not a service list: {first:?}");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        let second = answers.message().await.unwrap().unwrap();
        let Some(MessageResponse::FileDescriptorResponse(files)) = second.message_response else {
            panic!("no file for mkondo.v1.Admin: {second:?}");
        };
        (names, files.file_descriptor_proto.len())
    }};
}

fn check(version: &str, names: &[String], files: usize) {
    for want in SERVICES {
        assert!(
            names.iter().any(|n| n == want),
            "{version}: {want} not in {names:?}"
        );
    }
    assert!(
        files > 0,
        "{version}: no file descriptor for mkondo.v1.Admin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_v1_lists_the_services() {
    let server = TestServer::start_default().await;
    let (names, files) = ask!(v1, channel(&server).await);
    check("v1", &names, files);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_v1alpha_lists_the_services() {
    let server = TestServer::start_default().await;
    let (names, files) = ask!(v1alpha, channel(&server).await);
    check("v1alpha", &names, files);
}
