//! Installations, links and jobs through the hub facade: settings validation, secrets at rest,
//! connection tests, and the scheduler's rules (no overlapping runs, missed slots run once).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::support::{world, TG, TG_JOB, ZD_JOB};
use sqlx::Row as _;
use switchboard::hub::{HubError, LinkSettings, NewInstallation, NewLink, SECRET_MASK};
use switchboard_testkit as kit;

async fn raw_db(w: &crate::support::World) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        w.dir.path().join("hub.db").display()
    ))
    .await
    .expect("open db")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installations_validate_settings_and_keep_secrets_sealed() {
    let w = world().await;
    let view = w.hub.get_installation("zd").await.expect("view");
    assert_eq!(view.settings["api_token"], SECRET_MASK);
    assert_eq!(view.kind, "helpdesk");
    assert_eq!(view.webhook_path, "/webhooks/zd");
    let token = w.zd.config().api_token;
    let pool = raw_db(&w).await;
    let row = sqlx::query("SELECT settings_json, secrets FROM installations WHERE id = 'zd'")
        .fetch_one(&pool)
        .await
        .expect("row");
    let settings: String = row.get("settings_json");
    let secrets: Vec<u8> = row.get("secrets");
    assert!(!settings.contains(&token));
    assert!(
        !secrets.windows(token.len()).any(|w| w == token.as_bytes()),
        "token stored in clear"
    );

    let new = |id: &str, settings: &[(&str, &str)]| NewInstallation {
        id: id.into(),
        plugin_id: "telegram".into(),
        settings: settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        enabled: None,
        deadline_ms: None,
    };
    let err = w
        .hub
        .create_installation(new("tg2", &[("bot_token", "1:a"), ("colour", "red")]))
        .await
        .expect_err("unknown");
    assert!(
        matches!(&err, HubError::Invalid(m) if m.contains("colour")),
        "{err:?}"
    );
    let err = w
        .hub
        .create_installation(new("tg2", &[]))
        .await
        .expect_err("missing");
    assert!(
        matches!(&err, HubError::Invalid(m) if m.contains("bot_token")),
        "{err:?}"
    );
    let err = w
        .hub
        .create_installation(new("Bad Id", &[("bot_token", "1:a")]))
        .await
        .expect_err("slug");
    assert!(matches!(err, HubError::Invalid(_)));
    let err = w
        .hub
        .create_installation(new(TG, &[("bot_token", "1:a")]))
        .await
        .expect_err("duplicate");
    assert!(matches!(err, HubError::Conflict(_)), "{err:?}");
    let err = w
        .hub
        .create_installation(NewInstallation {
            plugin_id: "nope".into(),
            ..new("x", &[])
        })
        .await
        .expect_err("no plugin");
    assert!(matches!(err, HubError::Invalid(_)));

    // One job per stream, on the manifest's default schedule.
    let jobs = w.hub.list_jobs().await.expect("jobs");
    let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, [TG_JOB, ZD_JOB]);
    assert_eq!(jobs[0].schedule, "*/10 * * * * *");
    assert_eq!(jobs[0].time_zone, "UTC");

    // Links: kinds are checked, one link per social installation.
    let link = |id: &str, social: &str, helpdesk: &str| NewLink {
        id: id.into(),
        social_installation: social.into(),
        helpdesk_installation: helpdesk.into(),
        settings: LinkSettings::default(),
    };
    assert!(matches!(
        w.hub.create_link(link("l2", "zd", "tg")).await,
        Err(HubError::Invalid(_))
    ));
    assert!(matches!(
        w.hub.create_link(link("l2", TG, "zd")).await,
        Err(HubError::Conflict(_))
    ));
    assert_eq!(w.hub.list_links().await.expect("links").len(), 1);
    w.hub.delete_link("tg-to-zd").await.expect("delete");
    assert!(matches!(
        w.hub.delete_link("tg-to-zd").await,
        Err(HubError::NotFound(_))
    ));

    // A plugin in use is not removed.
    assert!(matches!(
        w.hub.remove_plugin("telegram", None).await,
        Err(HubError::Conflict(_))
    ));
    let err = w
        .hub
        .approve_plugin("telegram", "0.1.0", vec!["https://evil.example".into()])
        .await;
    assert!(
        matches!(err, Err(HubError::Invalid(_)) | Err(HubError::NotFound(_))),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_test_reports_without_saving() {
    let w = world().await;
    w.customer(5001, "Aiko", "hello");
    let report = w.hub.test_installation(TG).await.expect("test");
    assert!(report.ok, "{report:?}");
    assert!(report.detail.contains("1 event"), "{report:?}");
    // Nothing was stored: the real poll still finds the message.
    assert_eq!(
        w.hub.run_job_now(TG_JOB).await.expect("run").events_stored,
        1
    );
    assert!(w.hub.test_installation("zd").await.expect("test").ok);

    let bad = NewInstallation {
        id: "tg-bad".into(),
        plugin_id: "telegram".into(),
        settings: [
            ("bot_token", "999:wrong"),
            (
                "api_base",
                w.hub.get_installation(TG).await.expect("tg").settings["api_base"].as_str(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        enabled: Some(false),
        deadline_ms: None,
    };
    let mut slow = NewInstallation {
        id: "tg-slow".into(),
        deadline_ms: Some(10),
        ..bad.clone()
    };
    let error = w
        .hub
        .create_installation(slow.clone())
        .await
        .expect_err("too short");
    assert!(error.to_string().contains("100 to 60000 ms"), "{error}");
    slow.deadline_ms = Some(30_000);
    let view = w.hub.create_installation(slow).await.expect("create");
    assert_eq!(view.deadline_ms, Some(30_000));
    w.hub.create_installation(bad).await.expect("create");
    let report = w.hub.test_installation("tg-bad").await.expect("test");
    assert!(!report.ok, "{report:?}");
    assert!(report.detail.contains("unauthorized"), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_is_not_started_again_and_missed_slots_run_once() {
    let w = world().await;
    let db = w.hub.db();
    // Someone else holds the Telegram job.
    let now = chrono::Utc::now().timestamp_millis();
    let run = db
        .claim_job(
            TG_JOB,
            "other-host",
            now,
            now + 60_000,
            None,
            None,
            "manual",
        )
        .await
        .expect("claim");
    assert!(run.is_some());
    assert!(matches!(
        w.hub.run_job_now(TG_JOB).await,
        Err(HubError::Conflict(_))
    ));
    assert!(db
        .claim_job(TG_JOB, "third", now, now + 60_000, None, None, "manual")
        .await
        .expect("claim")
        .is_none());

    // A yearly job whose slot passed long ago (the hub was down) runs once, then waits.
    w.hub
        .set_job_schedule(ZD_JOB, "0 0 0 1 1 *", Some("Asia/Tokyo"))
        .await
        .expect("schedule");
    w.hub.set_job_paused(TG_JOB, true).await.expect("pause");
    let pool = raw_db(&w).await;
    sqlx::query("UPDATE jobs SET next_run_at = ? WHERE id = ?")
        .bind(now - 3 * 365 * 86_400_000)
        .bind(ZD_JOB)
        .execute(&pool)
        .await
        .expect("backdate");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut workers = w.hub.start_workers(shutdown.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let runs = db.job_runs(ZD_JOB, 10).await.expect("runs");
        if runs.iter().any(|r| r.finished_at.is_some()) {
            break;
        }
        assert!(Instant::now() < deadline, "the overdue job never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let runs = db.job_runs(ZD_JOB, 10).await.expect("runs");
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0].trigger, "schedule");
    let job = w
        .hub
        .list_jobs()
        .await
        .expect("jobs")
        .into_iter()
        .find(|j| j.id == ZD_JOB)
        .expect("job");
    assert!(
        job.next_run_at
            .as_deref()
            .is_some_and(|t| t > chrono::Utc::now().to_rfc3339().as_str()),
        "{job:?}"
    );
    // The start cleared the marker the dead "other host" left on the Telegram job.
    let tg = w
        .hub
        .list_jobs()
        .await
        .expect("jobs")
        .into_iter()
        .find(|j| j.id == TG_JOB)
        .expect("job");
    assert!(!tg.running && tg.paused, "{tg:?}");
    assert!(w
        .hub
        .render_metrics()
        .contains("switchboard_job_lag_seconds{job=\"zd:ticket-changes\"}"));
    shutdown.cancel();
    while workers.join_next().await.is_some() {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_whose_manifest_differs_from_the_approved_one_is_refused_until_reapproved() {
    let w = world().await;
    assert!(w.hub.test_installation(TG).await.expect("test").ok);
    // What an admin approved differs from what the component describes now (as a component
    // with a clock-dependent `describe` would make it): here the stored copy is edited.
    let pool = raw_db(&w).await;
    sqlx::query(
        "UPDATE plugins SET manifest_json = json_set(manifest_json, '$.capabilities.http_hosts', \
         json_array('https://api.telegram.org')) WHERE plugin_id = 'telegram'",
    )
    .execute(&pool)
    .await
    .expect("edit the approved manifest");
    let error = w.hub.test_installation(TG).await.expect_err("refused");
    let message = error.to_string();
    assert!(
        matches!(error, HubError::Invalid(_))
            && message.contains("telegram")
            && message.contains("capabilities.http_hosts")
            && message.contains("approve it again"),
        "{message}"
    );

    // Approving the component again stores what it describes, and it runs.
    w.hub
        .install_plugin(&kit::component_once("plugins/telegram"), true)
        .await
        .expect("approve again");
    assert!(w.hub.test_installation(TG).await.expect("test").ok);
}
