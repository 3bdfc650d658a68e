//! Presence in Redis, shared by every node: one hash per user holding an entry
//! per connection, and one sorted set indexing each entry by when it expires.
//!
//! - A connection's entry is `<node id>.<session id>` (session ids are unique
//!   per process only) → `f` / `b` (foreground / background) and the time its
//!   node last refreshed it. The hash also keeps `ls`, the user's last seen.
//! - Each node refreshes its own entries four times per TTL (`upkeep`). A
//!   crashed node stops refreshing; once an entry's expiry passes, any node's
//!   sweep (every eighth of the TTL, at most a second apart) removes it. Status is computed from the entries present, so it
//!   changes when an entry is removed (by `remove` or by a sweep), never silently.
//! - `set`, `remove` and the sweep are Lua scripts: each reads the status,
//!   changes the entries and reads it again atomically, so exactly one caller
//!   — on whichever node — sees a given change and announces it. A sweep that
//!   finds an entry expired reports the offline change with the last time the
//!   dead node refreshed it as last seen.
//! - Keys: `<prefix>:presence:<len(app)>:<app>:<user>` (the length keeps
//!   `a:b`+`c` apart from `a`+`b:c`) and `<prefix>:presence-expiry`. The scripts
//!   build key names from the index, so this needs one Redis (or a primary with
//!   replicas), not Redis Cluster.
//! - Redis failing: `set` / `remove` log and report no change; `get` reports
//!   nobody (callers fall back to the stored last seen). When Redis comes back
//!   the broker has every client reconnect, which sets their entries again.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use redis::aio::ConnectionManager;
use redis::Script;

use super::presence::{AppState, Change, PresenceManager, Status, UserPresence};
use super::redis_broker::request;

/// How long a user's hash (and so `ls`) outlives its last change.
const KEEP_MS: i64 = 24 * 3600 * 1000;
/// Expired entries removed per sweep script call.
const SWEEP_BATCH: usize = 500;
/// Entries refreshed per refresh script call.
const REFRESH_BATCH: usize = 500;
const STRIPES: usize = 64;

const COMMON: &str = r#"
local function status(key)
  local all = redis.call('HGETALL', key)
  local away = false
  for i = 1, #all, 2 do
    if all[i] ~= 'ls' then
      if string.sub(all[i + 1], 1, 1) == 'f' then return 'online' end
      away = true
    end
  end
  if away then return 'away' end
  return 'offline'
end
local function member(app, user, field)
  return cjson.encode({app, user, field})
end
"#;

/// KEYS: hash, index. ARGV: app, user, field, state, now, expiry, keep.
const SET: &str = r#"
local before = status(KEYS[1])
redis.call('HSET', KEYS[1], ARGV[3], ARGV[4] .. ':' .. ARGV[5], 'ls', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('ZADD', KEYS[2], ARGV[6], member(ARGV[1], ARGV[2], ARGV[3]))
local after = status(KEYS[1])
if before == after then return false end
return after
"#;

/// KEYS: hash, index. ARGV: app, user, field, now, keep.
const REMOVE: &str = r#"
local before = status(KEYS[1])
if redis.call('HDEL', KEYS[1], ARGV[3]) == 0 then return false end
redis.call('ZREM', KEYS[2], member(ARGV[1], ARGV[2], ARGV[3]))
redis.call('HSET', KEYS[1], 'ls', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
local after = status(KEYS[1])
if before == after then return false end
return after
"#;

/// KEYS: index. ARGV: now, expiry, keep, then (hash, app, user, field) per entry.
/// Refreshes the entries still present; returns the fields that were gone.
const REFRESH: &str = r#"
local gone = {}
for i = 4, #ARGV, 4 do
  local key, field = ARGV[i], ARGV[i + 3]
  local v = redis.call('HGET', key, field)
  if v then
    redis.call('HSET', key, field, string.sub(v, 1, 1) .. ':' .. ARGV[1])
    redis.call('PEXPIRE', key, ARGV[3])
    redis.call('ZADD', KEYS[1], ARGV[2], member(ARGV[i + 1], ARGV[i + 2], field))
  else
    table.insert(gone, field)
  end
end
return gone
"#;

/// KEYS: index. ARGV: now, batch, key prefix. Removes expired entries; returns
/// {app, user, status, last seen} for each user whose status changed.
const SWEEP: &str = r#"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local out = {}
for _, m in ipairs(due) do
  redis.call('ZREM', KEYS[1], m)
  local ok, t = pcall(cjson.decode, m)
  if ok and type(t) == 'table' and #t == 3 then
    local app, user, field = t[1], t[2], t[3]
    local key = ARGV[3] .. string.len(app) .. ':' .. app .. ':' .. user
    local v = redis.call('HGET', key, field)
    if v then
      local before = status(key)
      redis.call('HDEL', key, field)
      local seen = string.sub(v, 3)
      local ls = redis.call('HGET', key, 'ls')
      if (not ls) or (tonumber(seen) or 0) > (tonumber(ls) or 0) then
        ls = seen
        redis.call('HSET', key, 'ls', ls)
      end
      local after = status(key)
      if before ~= after then
        table.insert(out, {app, user, after, ls})
      end
    end
  end
end
return {#due, out}
"#;

/// This node's connection, as refreshed by `upkeep`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Conn {
    app: Arc<str>,
    user: Arc<str>,
    id: u64,
}

pub struct RedisPresence {
    conn: ConnectionManager,
    prefix: String,
    node_id: Arc<str>,
    ttl: Duration,
    /// This node's connections and their state: what `upkeep` refreshes.
    local: DashMap<Conn, AppState>,
    /// Serializes `set` / `remove` / re-adding by `upkeep` per connection, so an
    /// entry being removed is never re-added behind the remove's back.
    stripes: Vec<tokio::sync::Mutex<()>>,
    last_refresh: AtomicI64,
    set: Script,
    remove: Script,
    refresh: Script,
    sweep: Script,
}

impl RedisPresence {
    pub fn new(
        conn: ConnectionManager,
        prefix: &str,
        node_id: Arc<str>,
        ttl: Duration,
    ) -> Arc<Self> {
        let script = |body: &str| Script::new(&format!("{COMMON}{body}"));
        Arc::new(Self {
            conn,
            prefix: prefix.to_owned(),
            node_id,
            ttl,
            local: DashMap::new(),
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            last_refresh: AtomicI64::new(0),
            set: script(SET),
            remove: script(REMOVE),
            refresh: script(REFRESH),
            sweep: script(SWEEP),
        })
    }

    fn user_key(&self, app: &str, user: &str) -> String {
        format!("{}{}:{app}:{user}", self.user_key_prefix(), app.len())
    }

    fn user_key_prefix(&self) -> String {
        format!("{}:presence:", self.prefix)
    }

    fn index_key(&self) -> String {
        format!("{}:presence-expiry", self.prefix)
    }

    fn field(&self, conn: u64) -> String {
        format!("{}.{conn}", self.node_id)
    }

    fn ttl_ms(&self) -> i64 {
        self.ttl.as_millis() as i64
    }

    fn stripe(&self, conn: u64) -> &tokio::sync::Mutex<()> {
        &self.stripes[(conn as usize) % STRIPES]
    }

    /// Runs a script with a bounded wait; `None` (logged) when Redis fails.
    async fn run<T: redis::FromRedisValue>(
        &self,
        what: &str,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Option<T> {
        let what = format!("presence {what}");
        request(&what, || {
            let mut conn = self.conn.clone();
            let invocation = &invocation;
            async move { invocation.invoke_async::<T>(&mut conn).await }
        })
        .await
    }

    async fn set_entry(
        &self,
        app: &str,
        user: &str,
        conn: u64,
        state: AppState,
        now: i64,
    ) -> Option<Status> {
        let mut call = self.set.prepare_invoke();
        call.key(self.user_key(app, user))
            .key(self.index_key())
            .arg(app)
            .arg(user)
            .arg(self.field(conn))
            .arg(state_code(state))
            .arg(now)
            .arg(now + self.ttl_ms())
            .arg(KEEP_MS);
        let changed: Option<String> = self.run("set", call).await.flatten();
        changed.as_deref().and_then(parse_status)
    }

    /// Refreshes this node's entries; re-adds (and reports) those a sweep
    /// removed while this node was too slow to refresh them.
    async fn refresh_local(&self, now: i64) -> Vec<Change> {
        let conns: Vec<(Conn, AppState)> = self
            .local
            .iter()
            .map(|e| (e.key().clone(), *e.value()))
            .collect();
        let mut changes = Vec::new();
        for chunk in conns.chunks(REFRESH_BATCH) {
            let mut call = self.refresh.prepare_invoke();
            call.key(self.index_key())
                .arg(now)
                .arg(now + self.ttl_ms())
                .arg(KEEP_MS);
            for (c, _) in chunk {
                call.arg(self.user_key(&c.app, &c.user))
                    .arg(&*c.app)
                    .arg(&*c.user)
                    .arg(self.field(c.id));
            }
            let Some(gone) = self.run::<Vec<String>>("refresh", call).await else {
                return changes;
            };
            for (c, _) in chunk
                .iter()
                .filter(|(c, _)| gone.contains(&self.field(c.id)))
            {
                let _guard = self.stripe(c.id).lock().await;
                let Some(state) = self.local.get(c).map(|s| *s) else {
                    continue;
                };
                tracing::info!(user = %c.user, "presence entry expired while connected: re-adding");
                if let Some(status) = self.set_entry(&c.app, &c.user, c.id, state, now).await {
                    changes.push(Change {
                        app: c.app.to_string(),
                        user: c.user.to_string(),
                        status,
                        last_seen: now,
                    });
                }
            }
        }
        changes
    }

    async fn sweep_expired(&self, now: i64) -> Vec<Change> {
        let mut changes = Vec::new();
        loop {
            let mut call = self.sweep.prepare_invoke();
            call.key(self.index_key())
                .arg(now)
                .arg(SWEEP_BATCH)
                .arg(self.user_key_prefix());
            type Swept = (usize, Vec<(String, String, String, String)>);
            let Some((due, found)) = self.run::<Swept>("sweep", call).await else {
                return changes;
            };
            changes.extend(found.into_iter().filter_map(|(app, user, status, seen)| {
                Some(Change {
                    app,
                    user,
                    status: parse_status(&status)?,
                    last_seen: seen.parse().unwrap_or(now),
                })
            }));
            if due < SWEEP_BATCH {
                return changes;
            }
        }
    }
}

fn state_code(state: AppState) -> &'static str {
    match state {
        AppState::Foreground => "f",
        AppState::Background => "b",
    }
}

fn parse_status(s: &str) -> Option<Status> {
    match s {
        "online" => Some(Status::Online),
        "away" => Some(Status::Away),
        "offline" => Some(Status::Offline),
        _ => None,
    }
}

#[async_trait]
impl PresenceManager for RedisPresence {
    async fn set(
        &self,
        app: &str,
        user: &str,
        conn: u64,
        state: AppState,
        now: i64,
    ) -> Option<Status> {
        let _guard = self.stripe(conn).lock().await;
        let key = Conn {
            app: Arc::from(app),
            user: Arc::from(user),
            id: conn,
        };
        self.local.insert(key, state);
        self.set_entry(app, user, conn, state, now).await
    }

    async fn remove(&self, app: &str, user: &str, conn: u64, now: i64) -> Option<Status> {
        let _guard = self.stripe(conn).lock().await;
        let key = Conn {
            app: Arc::from(app),
            user: Arc::from(user),
            id: conn,
        };
        self.local.remove(&key);
        let mut call = self.remove.prepare_invoke();
        call.key(self.user_key(app, user))
            .key(self.index_key())
            .arg(app)
            .arg(user)
            .arg(self.field(conn))
            .arg(now)
            .arg(KEEP_MS);
        let changed: Option<String> = self.run("remove", call).await.flatten();
        changed.as_deref().and_then(parse_status)
    }

    async fn get(&self, app: &str, users: &[String]) -> Vec<UserPresence> {
        if users.is_empty() {
            return Vec::new();
        }
        let mut pipe = redis::pipe();
        for u in users {
            pipe.hgetall(self.user_key(app, u));
        }
        type Hash = Vec<(String, String)>;
        let got = request("reading presence", || {
            let mut conn = self.conn.clone();
            let pipe = &pipe;
            async move { pipe.query_async::<Vec<Hash>>(&mut conn).await }
        });
        let Some(hashes) = got.await else {
            return Vec::new();
        };
        users
            .iter()
            .zip(hashes)
            .filter(|(_, h)| !h.is_empty())
            .map(|(u, h)| {
                let mut status = Status::Offline;
                let mut last_seen = None;
                for (field, value) in &h {
                    if field == "ls" {
                        last_seen = value.parse().ok();
                    } else if value.starts_with('f') {
                        status = Status::Online;
                    } else if status == Status::Offline {
                        status = Status::Away;
                    }
                }
                UserPresence {
                    user_id: u.clone(),
                    status,
                    last_seen,
                }
            })
            .collect()
    }

    fn upkeep_interval(&self) -> Option<Duration> {
        Some((self.ttl / 8).clamp(Duration::from_millis(50), Duration::from_secs(1)))
    }

    async fn upkeep(&self, now: i64) -> Vec<Change> {
        let mut changes = Vec::new();
        let last = self.last_refresh.load(Ordering::Relaxed);
        // Four refreshes per TTL: a late one or two do not expire a live entry.
        if now - last >= self.ttl_ms() / 4 {
            self.last_refresh.store(now, Ordering::Relaxed);
            changes.extend(self.refresh_local(now).await);
        }
        changes.extend(self.sweep_expired(now).await);
        changes
    }
}
