//! The change feed (ListEntries, WatchEntries), reflection in both versions, and
//! SHUTTING_DOWN while the server drains.

mod support;

use std::time::Duration;

use akte_server::client::sha256;
use akte_server::pb::akte::v1 as pb;
use sha2::Digest as _;
use support::{add_version, expect_err, expect_status, fixture, Env, R};
use tonic::Code;

/// The next message of a stream; the bound only keeps a broken server from hanging the
/// test, it is no timing assertion.
async fn next<T>(s: &mut tonic::Streaming<T>) -> Result<Option<T>, tonic::Status> {
    tokio::time::timeout(Duration::from_secs(60), s.message())
        .await
        .expect("the stream answered")
}

fn leaf(e: &pb::JournalEntry) -> Vec<u8> {
    let mut h = sha2::Sha256::new();
    h.update([0u8]);
    h.update(&e.encoded_entry);
    h.finalize().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_entries_pages_through_a_range_of_the_journal() -> R<()> {
    let env = Env::new().await;
    let mut f = fixture(&env, "bauamt").await;
    add_version(&mut f.clerk, &f.doc.name, b"%PDF eins").await?;
    let mut reader = env
        .as_role("bauamt", "reader:revision", &[pb::Role::Reader])
        .await;
    let list = |start_seq, page_token: &str| pb::ListEntriesRequest {
        parent: "tenants/bauamt".into(),
        start_seq,
        page_size: 2,
        page_token: page_token.into(),
    };
    let mut all = Vec::new();
    let mut token = String::new();
    let size = loop {
        let page = reader
            .journal
            .list_entries(list(1, &token))
            .await?
            .into_inner();
        assert!(page.entries.len() <= 2);
        all.extend(page.entries);
        if page.next_page_token.is_empty() {
            break page.journal_size;
        }
        token = page.next_page_token;
    };
    // Entries 1.. in order, each as GetEntry returns it, chained by leaf hashes.
    assert_eq!(size, 4, "plan unit, file, document, version");
    let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    for w in all.windows(2) {
        assert_eq!(w[1].prev_leaf_hash, leaf(&w[0]));
    }
    for e in &all {
        assert_eq!(e.leaf_hash, leaf(e));
        let got = reader
            .journal
            .get_entry(pb::GetEntryRequest {
                name: e.name.clone(),
            })
            .await?
            .into_inner();
        assert_eq!(&got, e);
    }
    let version = all.last().unwrap();
    assert_eq!(version.kind, "version.add");
    assert!(version
        .payloads
        .iter()
        .any(|p| p.kind == "content" && p.sha256 == sha256(b"%PDF eins")));

    // At the end: an empty page; beyond: OUT_OF_RANGE. A token goes with its start.
    let end = reader.journal.list_entries(list(4, "")).await?.into_inner();
    assert!(end.entries.is_empty() && end.next_page_token.is_empty());
    assert_eq!(end.journal_size, 4);
    expect_err(
        reader.journal.list_entries(list(5, "")).await,
        Code::OutOfRange,
        "BEYOND_JOURNAL",
    );
    let first = reader.journal.list_entries(list(0, "")).await?.into_inner();
    expect_err(
        reader
            .journal
            .list_entries(list(1, &first.next_page_token))
            .await,
        Code::InvalidArgument,
        "INVALID_PAGE_TOKEN",
    );
    // Another tenant sees nothing.
    env.tenant("andere").await;
    let mut other = env.as_role("andere", "admin:x", &[pb::Role::Admin]).await;
    expect_err(
        other.journal.list_entries(list(0, "")).await,
        Code::NotFound,
        "NOT_FOUND",
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_entries_follows_the_journal_until_the_server_drains() -> R<()> {
    let env = Env::new().await;
    let mut f = fixture(&env, "bauamt").await;
    let mut reader = env
        .as_role("bauamt", "reader:spiegel", &[pb::Role::Reader])
        .await;
    let watch = |start_seq| pb::WatchEntriesRequest {
        parent: "tenants/bauamt".into(),
        start_seq,
    };
    // What is there first, then what comes.
    let mut s = reader.journal.watch_entries(watch(1)).await?.into_inner();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let m = next(&mut s).await?.expect("a message");
        seen.extend(m.entries.iter().map(|e| e.seq));
    }
    assert_eq!(seen, vec![1, 2]);
    let v = add_version(&mut f.clerk, &f.doc.name, b"neu").await?;
    let m = loop {
        let m = next(&mut s).await?.expect("a message");
        if !m.entries.is_empty() {
            break m;
        }
    };
    assert_eq!(m.entries[0].seq, 3);
    assert_eq!(m.entries[0].seq, v.created.as_ref().unwrap().journal_seq);
    assert_eq!(m.entries[0].kind, "version.add");

    // A watcher may start beyond the end: it waits until the journal gets there.
    let mut ahead = reader.journal.watch_entries(watch(5)).await?.into_inner();
    add_version(&mut f.clerk, &f.doc.name, b"vier").await?;
    add_version(&mut f.clerk, &f.doc.name, "fünf".as_bytes()).await?;
    let m = loop {
        let m = next(&mut ahead).await?.expect("a message");
        if !m.entries.is_empty() {
            break m;
        }
    };
    assert_eq!(m.entries[0].seq, 5);

    // Draining ends open streams with UNAVAILABLE / SHUTTING_DOWN: reconnect later.
    let _ = env.server.shutdown_handle().send(true);
    let ended = loop {
        match next(&mut s).await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    expect_status(&ended, Code::Unavailable, "SHUTTING_DOWN");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_speaks_v1_and_v1alpha() -> R<()> {
    use tonic_reflection::pb::v1 as r1;
    use tonic_reflection::pb::v1alpha as r0;
    let env = Env::new().await;
    let channel = tonic::transport::Endpoint::from_shared(env.url())?
        .connect()
        .await?;
    let want = [
        "akte.v1.JournalService",
        "akte.v1.DocumentService",
        "google.longrunning.Operations",
    ];

    let mut old = r0::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let req = r0::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(r0::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut s = old
        .server_reflection_info(tokio_stream::iter([req]))
        .await?
        .into_inner();
    let Some(r0::server_reflection_response::MessageResponse::ListServicesResponse(l)) =
        next(&mut s).await?.expect("an answer").message_response
    else {
        panic!("not a list of services");
    };
    let names: Vec<String> = l.service.into_iter().map(|s| s.name).collect();
    for w in want {
        assert!(names.iter().any(|n| n == w), "v1alpha lists {w}: {names:?}");
    }
    // And describes them: the file that defines akte.v1.File.
    let req = r0::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            r0::server_reflection_request::MessageRequest::FileContainingSymbol(
                "akte.v1.File".into(),
            ),
        ),
    };
    let mut s = old
        .server_reflection_info(tokio_stream::iter([req]))
        .await?
        .into_inner();
    let Some(r0::server_reflection_response::MessageResponse::FileDescriptorResponse(fd)) =
        next(&mut s).await?.expect("an answer").message_response
    else {
        panic!("no file descriptor");
    };
    assert!(!fd.file_descriptor_proto.is_empty());

    let mut new = r1::server_reflection_client::ServerReflectionClient::new(channel);
    let req = r1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(r1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut s = new
        .server_reflection_info(tokio_stream::iter([req]))
        .await?
        .into_inner();
    let Some(r1::server_reflection_response::MessageResponse::ListServicesResponse(l)) =
        next(&mut s).await?.expect("an answer").message_response
    else {
        panic!("not a list of services");
    };
    let names: Vec<String> = l.service.into_iter().map(|s| s.name).collect();
    for w in want {
        assert!(names.iter().any(|n| n == w), "v1 lists {w}: {names:?}");
    }
    Ok(())
}
