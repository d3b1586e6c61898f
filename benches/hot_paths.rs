//! Micro-benchmarks of kokoro's hot paths, on the embedded SQLite store:
//! dispatch to a resident actor, activation of a player from storage,
//! deciding a command into its WriteSet, and group commit of one batch.
//! `cargo bench --bench hot_paths`. Speed claims come from these and from
//! `kokoro bench` / `kokoro loadtest`, never from timed unit tests.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::game::economy::shop::Catalogue;
use actors::game::economy::EconomyCommand;
use actors::game::{self, Context};
use actors::state::UserState;
use actors::{Command, CommandKind, GuildId, Runtime, RuntimeConfig, Store, UserId, UserKey};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

const SEEDED: u64 = 400_000;

fn key(u: i64) -> UserKey {
    UserKey::new(GuildId::new(1).unwrap(), UserId::new(u).unwrap())
}

fn balance(u: i64) -> Command {
    Command {
        id: None,
        key: key(u),
        kind: CommandKind::Economy(EconomyCommand::Balance),
    }
}

async fn seeded_store(dir: &tempfile::TempDir) -> Store {
    let store = Store::open(None, dir.path(), &Default::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    kokoro::bench::seed(&store, SEEDED).await.unwrap();
    store
}

fn hot_paths(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let runtime = rt.block_on(async {
        let store = seeded_store(&dir).await;
        Arc::new(
            Runtime::start(store, RuntimeConfig::default())
                .await
                .unwrap(),
        )
    });

    // A read answered by a resident actor: registry lookup, mailbox, reply.
    rt.block_on(runtime.dispatch(balance(1)));
    c.bench_function("dispatch to a resident actor (balance)", |b| {
        b.to_async(&rt).iter(|| runtime.dispatch(balance(1)));
    });

    // A player not yet resident: spawn, load from SQLite, answer.
    let next = AtomicI64::new(2);
    c.bench_function("activate a stored player and answer", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let runtime = runtime.clone();
            let first = next.fetch_add(iters as i64, Ordering::Relaxed);
            async move {
                let start = Instant::now();
                for u in first..first + iters as i64 {
                    let user = (u - 2) % (SEEDED as i64 - 2) + 2;
                    runtime.dispatch(balance(user)).await;
                }
                start.elapsed()
            }
        });
    });

    // Deciding a give into its draft and WriteSet, and encoding the reply: pure CPU.
    let catalogue = Catalogue::shipped();
    let roster = actors::game::collection::roster::Roster::default();
    let generation = actors::game::generation::GenerationData::default();
    let state = UserState {
        exists: true,
        gold: 1_000_000,
        ..Default::default()
    };
    let give = CommandKind::Economy(EconomyCommand::Give {
        to: UserId::new(2).unwrap(),
        amount: 5,
    });
    c.bench_function("decide a give into its WriteSet and reply", |b| {
        b.iter(|| {
            let ctx = Context {
                now_ms: 1_700_000_000_000,
                catalogue: &catalogue,
                roster: &roster,
                generation: &generation,
                guild: actors::game::guild::settings::GuildSettings::fallback(),
                starting_gold: 100,
                starting_credits: 0,
                starting_gems: 0,
                fresh_id: 7,
                draw: 0,
            };
            let draft = game::decide(&state, key(1), &give, None, &ctx).unwrap();
            let reply = actors::Reply::ok("give", draft.data, draft.message);
            (draft.writes, serde_json::to_string(&reply).unwrap())
        });
    });

    // One group-commit transaction of 256 WriteSets (one per player, as in production).
    let store = runtime.store().clone();
    let batch_no = AtomicI64::new(0);
    let mut group = c.benchmark_group("group commit");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("256 buys in one transaction", |b| {
        b.to_async(&rt).iter_batched(
            || {
                let n = batch_no.fetch_add(1, Ordering::Relaxed);
                (0..256)
                    .map(|i| {
                        let user = (n * 256 + i) % (SEEDED as i64 - 1000) + 1000;
                        let state = UserState {
                            exists: true,
                            gold: 1_000_000_000,
                            ..Default::default()
                        };
                        let kind = CommandKind::Economy(EconomyCommand::Buy {
                            item: "bait".into(),
                            quantity: 1,
                        });
                        let ctx = Context {
                            now_ms: 1_700_000_000_000,
                            catalogue: &catalogue,
                            roster: &roster,
                            generation: &generation,
                            guild: actors::game::guild::settings::GuildSettings::fallback(),
                            starting_gold: 0,
                            starting_credits: 0,
                            starting_gems: 0,
                            fresh_id: 1,
                            draw: 0,
                        };
                        game::decide(&state, key(user), &kind, None, &ctx)
                            .unwrap()
                            .writes
                    })
                    .collect::<Vec<_>>()
            },
            |batch| {
                let store = store.clone();
                async move { store.commit(&batch).await.unwrap() }
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = hot_paths
}
criterion_main!(benches);
