//! Retry, backoff, budget and token-refresh behaviour against a scripted local HTTP server.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use spoke_hubspot::{
    CallKind, CreateInput, Error, ObjectType, Properties, RateLimitPolicy, RetryPolicy,
    SearchRequest, StaticToken,
};
use support::{RecordingBudget, Reply, Scripted, SwappingToken, client, fast_retry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ACCOUNT: &str = r#"{"portalId":42,"accountType":"STANDARD","timeZone":"US/Eastern","companyCurrency":"USD","uiDomain":"app.hubspot.com"}"#;

fn err_body(category: &str, message: &str) -> String {
    serde_json::json!({"status":"error","message":message,"correlationId":"corr-1","category":category})
        .to_string()
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let server = Scripted::start(vec![
        Reply::json(500, &err_body("INTERNAL_ERROR", "boom")),
        Reply::json(502, "<html>bad gateway</html>"),
        Reply::json(504, &err_body("GATEWAY_TIMEOUT", "slow")),
        Reply::json(200, ACCOUNT),
    ])
    .await;
    let budget = Arc::new(RecordingBudget::default());
    let portal = client(&server.base_url, budget.clone(), fast_retry())
        .portal(42, Arc::new(StaticToken::new("tok")));
    let details = portal.account_details().await.unwrap();
    assert_eq!(details.portal_id, 42);
    let seen = server.seen();
    assert_eq!(seen.len(), 4);
    assert!(seen.iter().all(|s| s.path == "/account-info/v3/details"));
    assert_eq!(
        seen[0].header("authorization").as_deref(),
        Some("Bearer tok")
    );
    // The budget is asked before every attempt, retries included.
    assert_eq!(budget.acquired.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn client_errors_are_never_retried() {
    for status in [400u16, 401, 403, 404, 409] {
        let server = Scripted::start(vec![
            Reply::json(status, &err_body("VALIDATION_ERROR", "nope")),
            Reply::json(200, ACCOUNT),
        ])
        .await;
        let portal = client(
            &server.base_url,
            Arc::new(RecordingBudget::default()),
            fast_retry(),
        )
        .portal(42, Arc::new(StaticToken::new("tok")));
        let err = portal.account_details().await.unwrap_err();
        assert_eq!(err.status(), Some(status));
        assert_eq!(
            server.seen().len(),
            1,
            "status {status} must not be retried"
        );
        let api = err.api().unwrap();
        assert_eq!(api.correlation_id.as_deref(), Some("corr-1"));
    }
}

#[tokio::test]
async fn locked_waits_at_least_two_seconds() {
    let server = Scripted::start(vec![
        Reply::json(423, &err_body("LOCKED", "locked")),
        Reply::json(200, ACCOUNT),
    ])
    .await;
    let portal = client(
        &server.base_url,
        Arc::new(RecordingBudget::default()),
        fast_retry(),
    )
    .portal(42, Arc::new(StaticToken::new("tok")));
    portal.account_details().await.unwrap();
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    let gap = seen[1].at - seen[0].at;
    assert!(gap >= Duration::from_secs(2), "423 retry after {gap:?}");
}

#[tokio::test]
async fn rate_limit_honours_retry_after_and_reports_the_policy() {
    let body = r#"{"status":"error","message":"You have reached your ten_secondly_rolling limit.","errorType":"RATE_LIMIT","correlationId":"c","policyName":"TEN_SECONDLY_ROLLING"}"#;
    let server = Scripted::start(vec![
        Reply::json(429, body).header("retry-after", "1"),
        Reply::json(477, &err_body("MIGRATION_IN_PROGRESS", "moving")).header("retry-after", "1"),
        Reply::json(200, ACCOUNT),
    ])
    .await;
    let budget = Arc::new(RecordingBudget::default());
    let portal = client(&server.base_url, budget.clone(), fast_retry())
        .portal(42, Arc::new(StaticToken::new("tok")));
    portal.account_details().await.unwrap();
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    assert!(seen[1].at - seen[0].at >= Duration::from_secs(1));
    assert!(seen[2].at - seen[1].at >= Duration::from_secs(1));
    assert_eq!(
        *budget.throttled.lock().unwrap(),
        vec![(42, RateLimitPolicy::TenSecondlyRolling)]
    );
}

#[tokio::test]
async fn daily_limit_is_final_and_attempts_are_bounded() {
    let daily = r#"{"status":"error","message":"You have reached your daily limit.","errorType":"RATE_LIMIT","policyName":"DAILY"}"#;
    let server = Scripted::start(vec![Reply::json(429, daily), Reply::json(200, ACCOUNT)]).await;
    let portal = client(
        &server.base_url,
        Arc::new(RecordingBudget::default()),
        fast_retry(),
    )
    .portal(42, Arc::new(StaticToken::new("tok")));
    let err = portal.account_details().await.unwrap_err();
    assert_eq!(err.api().unwrap().policy, Some(RateLimitPolicy::Daily));
    assert_eq!(server.seen().len(), 1);

    let server = Scripted::start(vec![Reply::json(503, "{}"); 10]).await;
    let retry = RetryPolicy {
        max_attempts: 3,
        ..fast_retry()
    };
    let portal = client(
        &server.base_url,
        Arc::new(RecordingBudget::default()),
        retry,
    )
    .portal(42, Arc::new(StaticToken::new("tok")));
    let err = portal.account_details().await.unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert_eq!(server.seen().len(), 3, "max_attempts bounds the calls");
}

#[tokio::test]
async fn expired_token_is_refreshed_exactly_once() {
    let expired = err_body(
        "EXPIRED_AUTHENTICATION",
        "The OAuth token used to make this call expired 5 minute(s) ago.",
    );
    let server = Scripted::start(vec![Reply::json(401, &expired), Reply::json(200, ACCOUNT)]).await;
    let tokens = Arc::new(SwappingToken::new("old-token", "new-token"));
    let portal = client(
        &server.base_url,
        Arc::new(RecordingBudget::default()),
        fast_retry(),
    )
    .portal(42, tokens.clone());
    portal.account_details().await.unwrap();
    let seen = server.seen();
    assert_eq!(
        seen[0].header("authorization").as_deref(),
        Some("Bearer old-token")
    );
    assert_eq!(
        seen[1].header("authorization").as_deref(),
        Some("Bearer new-token")
    );
    assert_eq!(*tokens.refreshes.lock().unwrap(), 1);

    // A second 401 after the refresh is final: no refresh loop.
    let server = Scripted::start(vec![
        Reply::json(401, &expired),
        Reply::json(401, &expired),
        Reply::json(200, ACCOUNT),
    ])
    .await;
    let tokens = Arc::new(SwappingToken::new("old-token", "new-token"));
    let portal = client(
        &server.base_url,
        Arc::new(RecordingBudget::default()),
        fast_retry(),
    )
    .portal(42, tokens.clone());
    let err = portal.account_details().await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert_eq!(server.seen().len(), 2);
    assert_eq!(*tokens.refreshes.lock().unwrap(), 1);
    assert!(!err.to_string().contains("token\":"), "{err}");
    assert!(!err.to_string().contains("new-token") && !err.to_string().contains("old-token"));

    // Invalid (not expired) authentication is refreshed once too: for a revoked authorisation
    // the refresh is what makes the token's owner learn of it. Still no loop.
    let invalid = err_body(
        "INVALID_AUTHENTICATION",
        "Authentication credentials not valid: the OAuth token is unknown or was revoked.",
    );
    let server = Scripted::start(vec![
        Reply::json(401, &invalid),
        Reply::json(401, &invalid),
        Reply::json(200, ACCOUNT),
    ])
    .await;
    let tokens = Arc::new(SwappingToken::new("old-token", "new-token"));
    let portal = client(
        &server.base_url,
        Arc::new(RecordingBudget::default()),
        fast_retry(),
    )
    .portal(42, tokens.clone());
    assert_eq!(
        portal.account_details().await.unwrap_err().status(),
        Some(401)
    );
    assert_eq!(server.seen().len(), 2);
    assert_eq!(*tokens.refreshes.lock().unwrap(), 1);
}

#[tokio::test]
async fn search_draws_from_the_search_budget() {
    let server = Scripted::start(vec![Reply::json(
        200,
        r#"{"total":1,"results":[{"id":"1","properties":{"domain":"a.com"}}]}"#,
    )])
    .await;
    let budget = Arc::new(RecordingBudget::default());
    let portal = client(&server.base_url, budget.clone(), fast_retry())
        .portal(9, Arc::new(StaticToken::new("tok")));
    let page = portal
        .search(ObjectType::Companies, &SearchRequest::default())
        .await
        .unwrap();
    assert_eq!(page.total, 1);
    assert_eq!(
        *budget.acquired.lock().unwrap(),
        vec![(9, CallKind::Search, 1)]
    );
    assert_eq!(server.seen()[0].path, "/crm/v3/objects/companies/search");
}

#[tokio::test]
async fn oversized_batches_fail_before_any_call() {
    let server = Scripted::start(vec![]).await;
    let budget = Arc::new(RecordingBudget::default());
    let portal = client(&server.base_url, budget.clone(), fast_retry())
        .portal(9, Arc::new(StaticToken::new("tok")));
    let inputs = vec![CreateInput::default(); 101];
    let err = portal
        .batch_create(ObjectType::Contacts, &inputs)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::BatchTooLarge {
                max: 100,
                got: 101,
                ..
            }
        ),
        "{err}"
    );
    assert!(server.seen().is_empty());
    assert!(budget.acquired.lock().unwrap().is_empty());
}

#[tokio::test]
async fn timeouts_are_reported_separately_and_retried_for_reads() {
    let server = Scripted::start(vec![
        Reply::json(200, ACCOUNT).delayed(Duration::from_secs(3)),
        Reply::json(200, ACCOUNT),
    ])
    .await;
    let portal = client(
        &server.base_url,
        Arc::new(RecordingBudget::default()),
        fast_retry(),
    )
    .portal(42, Arc::new(StaticToken::new("tok")));
    let started = Instant::now();
    portal.account_details().await.unwrap();
    assert_eq!(server.seen().len(), 2);
    assert!(started.elapsed() < Duration::from_secs(3));

    let server = Scripted::start(vec![
        Reply::json(200, ACCOUNT).delayed(Duration::from_secs(3)),
    ])
    .await;
    let portal = client(
        &server.base_url,
        Arc::new(RecordingBudget::default()),
        RetryPolicy::none(),
    )
    .portal(42, Arc::new(StaticToken::new("tok")));
    let err = portal.account_details().await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(err.is_retriable());
}

/// A raw TCP server that drops the first `drops` connections after reading the request, then answers.
async fn flaky_server(
    drops: usize,
    answer: &'static str,
) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let n = c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = vec![0u8; 16 * 1024];
            let _ = sock.read(&mut buf).await;
            if n < drops {
                drop(sock);
                continue;
            }
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                answer.len(),
                answer
            );
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
    });
    (format!("http://{addr}"), count)
}

#[tokio::test]
async fn connection_resets_are_retried_for_idempotent_calls_only() {
    let (base, count) = flaky_server(1, ACCOUNT).await;
    let portal = client(&base, Arc::new(RecordingBudget::default()), fast_retry())
        .portal(42, Arc::new(StaticToken::new("tok")));
    portal.account_details().await.unwrap();
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 2);

    // A batch create may have been applied before the connection broke: not repeated blindly.
    let (base, count) = flaky_server(1, r#"{"status":"COMPLETE","results":[]}"#).await;
    let portal = client(&base, Arc::new(RecordingBudget::default()), fast_retry())
        .portal(42, Arc::new(StaticToken::new("tok")));
    let input = CreateInput {
        properties: Properties::from([("email".to_string(), "a@x.com".to_string())]),
        ..CreateInput::default()
    };
    let err = portal
        .batch_create(ObjectType::Contacts, &[input])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Network {
                maybe_sent: true,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);

    // Nothing listening: a connect error, retried and finally reported as network error.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let portal = client(
        &format!("http://127.0.0.1:{port}"),
        Arc::new(RecordingBudget::default()),
        fast_retry(),
    )
    .portal(42, Arc::new(StaticToken::new("tok")));
    let err = portal.account_details().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Network {
                maybe_sent: false,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn creates_are_not_repeated_after_ambiguous_server_errors() {
    let created = r#"{"status":"COMPLETE","results":[{"id":"1","properties":{"name":"Acme"}}]}"#;
    let input = CreateInput {
        properties: Properties::from([("name".to_string(), "Acme".to_string())]),
        ..CreateInput::default()
    };
    // (first status, retried?)
    let cases = [
        (500u16, false),
        (502, false),
        (504, false),
        (503, true),
        (429, true),
        (423, true),
    ];
    for (status, retried) in cases {
        let server = Scripted::start(vec![
            Reply::json(status, &err_body("X", "x")).header("retry-after", "0"),
            Reply::json(201, created),
        ])
        .await;
        let retry = RetryPolicy {
            locked_min_delay: Duration::from_millis(10),
            ..fast_retry()
        };
        let portal = client(
            &server.base_url,
            Arc::new(RecordingBudget::default()),
            retry,
        )
        .portal(42, Arc::new(StaticToken::new("tok")));
        let result = portal
            .batch_create(ObjectType::Companies, std::slice::from_ref(&input))
            .await;
        assert_eq!(result.is_ok(), retried, "status {status}");
        assert_eq!(
            server.seen().len(),
            if retried { 2 } else { 1 },
            "status {status}"
        );
        if let Err(err) = result {
            assert!(err.may_have_been_applied(), "{err}");
        }
    }
    // Opting in retries them too.
    let server = Scripted::start(vec![Reply::json(502, "{}"), Reply::json(201, created)]).await;
    let retry = RetryPolicy {
        retry_ambiguous_writes: true,
        ..fast_retry()
    };
    let portal = client(
        &server.base_url,
        Arc::new(RecordingBudget::default()),
        retry,
    )
    .portal(42, Arc::new(StaticToken::new("tok")));
    let r = portal
        .batch_create(ObjectType::Companies, &[input])
        .await
        .unwrap();
    assert_eq!(r.results.len(), 1);
}
