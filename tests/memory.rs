//! What a resident player costs in memory, once it has answered a command
//! and gone idle: its task, its mailbox, its registry slot, its state. A
//! million of them must fit in 1 GiB, 1,073 bytes each.
//!
//! Two measures, each in a process of its own (nextest runs one test per
//! process): the bytes the allocator hands out (counted here, whatever the
//! allocator), and the resident set the process grows by, with the
//! allocator the binary uses (mimalloc), which is what an operator pays.
//! This is a debug build, whose futures are larger than release's, so the
//! bounds hold with room in `kokoro bench --resident` (README, Performance).

mod support;

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use actors::RuntimeConfig;
use futures::future::join_all;
use serde_json::json;
use support::*;

/// The binary's allocator, counting the bytes live.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes handed out per resident player, at most (700 measured here).
const LIVE_BYTES_PER_PLAYER: isize = 800;

/// Resident-set bytes per resident player, at most (745 measured here; a
/// million in 1 GiB is 1,073 each, which the whole release process must
/// keep, with the registry's table grown for a million).
const RSS_BYTES_PER_PLAYER: isize = 900;

/// Activates players `first..first + players`, 256 at a time.
async fn activate(rt: &actors::Runtime, first: i64, players: i64) {
    for chunk in (first..first + players).collect::<Vec<_>>().chunks(256) {
        let replies = join_all(
            chunk
                .iter()
                .map(|&u| dispatch_retrying(rt, cmd(u, "balance", json!({})))),
        )
        .await;
        assert!(replies.iter().all(|r| r.ok), "every balance is answered");
    }
}

fn rss_bytes() -> isize {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux's /proc");
    let kb: isize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

/// Activates `n` players after a warm-up and returns the growth of
/// (live bytes, resident set) per player. On PostgreSQL, so no database
/// cache lives in this process.
async fn cost_of_resident_players(n: i64) -> (isize, isize) {
    let db = TestDb::new(Backend::Postgres).await;
    let rt = db
        .runtime(RuntimeConfig {
            max_resident: 1_000_000,
            idle_timeout: Duration::from_secs(3600),
            ..Default::default()
        })
        .await;
    // Warm up what every player shares (pools, caches, the registry's
    // shards, the allocator's pages), then measure `n` more.
    activate(&rt, 1, 5_000).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (live, rss) = (LIVE.load(Ordering::Relaxed), rss_bytes());
    activate(&rt, 1_000_000, n).await;
    // Let every actor go back to waiting on its mailbox, and the answers'
    // buffers be freed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grown = (
        (LIVE.load(Ordering::Relaxed) - live) / n as isize,
        (rss_bytes() - rss) / n as isize,
    );
    assert_eq!(rt.resident(), 5_000 + n as usize, "all are resident");
    db.drop_db().await;
    grown
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_resident_players_fit_in_a_gibibyte() {
    let (live, rss) = cost_of_resident_players(100_000).await;
    println!("per resident player: {live} bytes allocated, {rss} bytes of resident set");
    assert!(
        live <= LIVE_BYTES_PER_PLAYER,
        "a resident player keeps {live} bytes allocated (at most {LIVE_BYTES_PER_PLAYER})"
    );
    assert!(
        rss <= RSS_BYTES_PER_PLAYER,
        "a resident player costs {rss} bytes of resident set (at most {RSS_BYTES_PER_PLAYER})"
    );
}
