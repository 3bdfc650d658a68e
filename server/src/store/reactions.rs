//! Reactions: a set of (message, emoji, user) rows, so reacting twice changes
//! nothing and unreacting removes exactly one user's emoji. Messages carry their
//! reactions everywhere they are read; a page of messages loads them with one
//! query, never one per message.

use std::collections::HashMap;

use super::events::{self, NewEvent};
use super::{now_ms, retrying, Message, Reaction, Store, Tx};
use crate::error::{Error, Result};
use mkondo_proto::Reason;

/// The most bytes an emoji (or a short custom reaction name) may take.
pub const MAX_EMOJI_BYTES: usize = 32;
/// The most distinct emoji one message may carry.
pub const MAX_EMOJI_PER_MESSAGE: i64 = 50;

/// 1–32 bytes, no whitespace or control characters: an emoji, a sequence of
/// them, or a short name such as `:thumbsup:`.
pub fn check_emoji(emoji: &str) -> Result<()> {
    if emoji.is_empty() || emoji.len() > MAX_EMOJI_BYTES {
        return Err(Error::invalid("emoji must be 1-32 bytes"));
    }
    if emoji.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid(
            "emoji must not contain whitespace or control characters",
        ));
    }
    Ok(())
}

/// One row of `reactions`: who reacted to which message with what.
#[derive(sqlx::FromRow)]
struct ReactionRow {
    conversation_id: String,
    seq: i64,
    emoji: String,
    user_id: String,
}

/// The reactions of some messages, ordered by reaction time (what `attach` expects).
const REACTIONS: &str = "SELECT conversation_id, seq, emoji, user_id FROM reactions";
const REACTIONS_ORDER: &str = "ORDER BY created_at, seq, emoji, user_id";

fn range_sql() -> String {
    format!(
        "{REACTIONS} WHERE app_id = $1 AND conversation_id = $2 AND seq >= $3 AND seq <= $4
         {REACTIONS_ORDER}"
    )
}

/// [`Store::fill_reactions`] for messages read inside a write transaction.
pub(crate) async fn fill_reactions_in(
    tx: &mut Tx<'_>,
    app: &str,
    conv: &str,
    messages: &mut [Message],
) -> Result<()> {
    for m in messages.iter_mut() {
        let rows = sqlx::query_as(&range_sql())
            .bind(app)
            .bind(conv)
            .bind(m.seq)
            .bind(m.seq)
            .fetch_all(&mut **tx)
            .await?;
        attach(std::slice::from_mut(m), rows);
    }
    Ok(())
}

/// How many distinct emoji a message carries, and how many of one of them.
#[derive(sqlx::FromRow)]
struct EmojiCounts {
    distinct_emoji: i64,
    this_emoji: i64,
}

/// Groups reaction rows, ordered by reaction time, into each message's
/// reactions: emoji in the order first used, users earliest first.
fn attach(messages: &mut [Message], rows: Vec<ReactionRow>) {
    let mut index = HashMap::with_capacity(messages.len());
    for (i, m) in messages.iter_mut().enumerate() {
        m.reactions.clear();
        index.insert((m.conversation_id.clone(), m.seq), i);
    }
    for row in rows {
        let Some(&i) = index.get(&(row.conversation_id, row.seq)) else {
            continue;
        };
        let m = &mut messages[i];
        match m.reactions.iter_mut().find(|r| r.emoji == row.emoji) {
            Some(r) => r.user_ids.push(row.user_id),
            None => m.reactions.push(Reaction {
                emoji: row.emoji,
                user_ids: vec![row.user_id],
            }),
        }
    }
}

impl Store {
    /// Fills the reactions of `messages`, all of conversation `conv`, with one
    /// query over their seq range.
    pub(crate) async fn fill_reactions(
        &self,
        app: &str,
        conv: &str,
        messages: &mut [Message],
    ) -> Result<()> {
        let (Some(low), Some(high)) = (
            messages.iter().map(|m| m.seq).min(),
            messages.iter().map(|m| m.seq).max(),
        ) else {
            return Ok(());
        };
        let rows = sqlx::query_as(&range_sql())
            .bind(app)
            .bind(conv)
            .bind(low)
            .bind(high)
            .fetch_all(&self.reader)
            .await?;
        attach(messages, rows);
        Ok(())
    }

    /// Fills the reactions of messages from any conversations (a user's sent
    /// messages) with one query naming each (conversation, seq).
    pub(crate) async fn fill_reactions_any(
        &self,
        app: &str,
        messages: &mut [Message],
    ) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let pairs: Vec<String> = (0..messages.len())
            .map(|i| {
                format!(
                    "(conversation_id = ${} AND seq = ${})",
                    2 * i + 2,
                    2 * i + 3
                )
            })
            .collect();
        let sql = format!(
            "{REACTIONS} WHERE app_id = $1 AND ({}) {REACTIONS_ORDER}",
            pairs.join(" OR ")
        );
        let mut query = sqlx::query_as(&sql).bind(app);
        for m in messages.iter() {
            query = query.bind(&m.conversation_id).bind(m.seq);
        }
        let rows = query.fetch_all(&self.reader).await?;
        attach(messages, rows);
        Ok(())
    }

    /// Adds `user`'s `emoji` to a message. Returns whether it was new (false:
    /// the user had already reacted so). Refuses deleted messages and a new
    /// emoji beyond the per-message limit.
    pub async fn add_reaction(
        &self,
        app: &str,
        conv: &str,
        seq: i64,
        emoji: &str,
        user: &str,
    ) -> Result<bool> {
        check_emoji(emoji)?;
        retrying(|| self.add_reaction_once(app, conv, seq, emoji, user)).await
    }

    async fn add_reaction_once(
        &self,
        app: &str,
        conv: &str,
        seq: i64,
        emoji: &str,
        user: &str,
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await?;
        events::lock_conversations(&mut tx, self.engine, &[(app, conv)]).await?;
        // The message's row stays locked until commit: a concurrent delete
        // (which erases reactions) or another emoji's count waits for this one.
        let deleted: Option<Option<i64>> = sqlx::query_scalar(&format!(
            "SELECT deleted_at FROM messages WHERE app_id = $1 AND conversation_id = $2 AND seq = $3{}",
            self.lock()
        ))
        .bind(app)
        .bind(conv)
        .bind(seq)
        .fetch_optional(&mut *tx)
        .await?;
        match deleted {
            None => return Err(Error::not_found("message")),
            Some(Some(_)) => return Err(deleted_error()),
            Some(None) => {}
        }
        let counts: EmojiCounts = sqlx::query_as(
            "SELECT CAST(COUNT(DISTINCT emoji) AS BIGINT) AS distinct_emoji,
                    CAST(COALESCE(SUM(CASE WHEN emoji = $4 THEN 1 ELSE 0 END), 0) AS BIGINT)
                        AS this_emoji
             FROM reactions WHERE app_id = $1 AND conversation_id = $2 AND seq = $3",
        )
        .bind(app)
        .bind(conv)
        .bind(seq)
        .bind(emoji)
        .fetch_one(&mut *tx)
        .await?;
        if counts.this_emoji == 0 && counts.distinct_emoji >= MAX_EMOJI_PER_MESSAGE {
            return Err(Error::invalid(format!(
                "a message carries at most {MAX_EMOJI_PER_MESSAGE} different emoji"
            )));
        }
        let done = sqlx::query(
            "INSERT INTO reactions (app_id, conversation_id, seq, emoji, user_id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (app_id, conversation_id, seq, emoji, user_id) DO NOTHING",
        )
        .bind(app)
        .bind(conv)
        .bind(seq)
        .bind(emoji)
        .bind(user)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        let added = done.rows_affected() > 0;
        if added {
            self.record_reacted(&mut tx, app, conv, seq, emoji, user, "added")
                .await?;
        }
        tx.commit().await?;
        Ok(added)
    }

    /// Records `message.reacted`: the message with its reactions as now, and
    /// the one change.
    #[allow(clippy::too_many_arguments)]
    async fn record_reacted(
        &self,
        tx: &mut Tx<'_>,
        app: &str,
        conv: &str,
        seq: i64,
        emoji: &str,
        user: &str,
        action: &str,
    ) -> Result<()> {
        let mut message = [self.locked_message(tx, app, conv, seq).await?];
        fill_reactions_in(tx, app, conv, &mut message).await?;
        let [message] = message;
        let event = NewEvent::new(
            app,
            "message.reacted",
            Some(conv),
            Some(user),
            now_ms(),
            serde_json::json!({
                "message": message,
                "reaction": { "emoji": emoji, "user_id": user, "action": action },
            }),
        )
        .authored_by(&message.sender_id)
        .carrying(&message.id);
        events::record(tx, self.engine, vec![event]).await
    }

    /// Removes `user`'s `emoji` from a message; returns whether there was one.
    pub async fn remove_reaction(
        &self,
        app: &str,
        conv: &str,
        seq: i64,
        emoji: &str,
        user: &str,
    ) -> Result<bool> {
        check_emoji(emoji)?;
        retrying(|| self.remove_reaction_once(app, conv, seq, emoji, user)).await
    }

    async fn remove_reaction_once(
        &self,
        app: &str,
        conv: &str,
        seq: i64,
        emoji: &str,
        user: &str,
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await?;
        events::lock_conversations(&mut tx, self.engine, &[(app, conv)]).await?;
        let done = sqlx::query(
            "DELETE FROM reactions WHERE app_id = $1 AND conversation_id = $2 AND seq = $3
             AND emoji = $4 AND user_id = $5",
        )
        .bind(app)
        .bind(conv)
        .bind(seq)
        .bind(emoji)
        .bind(user)
        .execute(&mut *tx)
        .await?;
        let removed = done.rows_affected() > 0;
        if removed {
            self.record_reacted(&mut tx, app, conv, seq, emoji, user, "removed")
                .await?;
        }
        tx.commit().await?;
        Ok(removed)
    }
}

/// What a change to a deleted message gets.
pub(crate) fn deleted_error() -> Error {
    Error::invalid("the message was deleted").with_reason(Reason::MessageDeleted)
}
