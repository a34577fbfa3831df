//! Awaitable service calls for async handlers (feature `async`): each
//! blocking method of [`DbPool`], [`RedisPool`] and the object calls of
//! [`Storage`] has an `_async` twin
//! (`db.query_async(sql, params).await`) that sends the same `call` frame
//! and lets the worker's other requests run until the `result` comes.
//!
//! A twin runs its blocking method twice without blocking: once to
//! *capture* the call it would make (service, binding, action, arguments),
//! then, after the awaited answer came, once more to *replay* that answer
//! into it, so the arguments and the reading of the answer are written once,
//! in the blocking method, and cannot drift apart.

use crate::error::HandlerError;
use crate::params::Params;
use crate::services::{DbPool, DbResult, ExecResult, ObjectInfo, RedisPool, Storage, StoredObject};
use serde_json::Value;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;

/// The future of an awaitable SQL call. Boxed, so that it does not hold on
/// to the parameter list (taken in full before it is returned): `&[id]`
/// written in the call works inside `tokio::join!` too.
pub type Awaited<'a, T> = Pin<Box<dyn Future<Output = Result<T, HandlerError>> + 'a>>;

/// A call taken by capturing: (service, binding, action, args).
type Captured = (String, String, String, Value);

enum Intercept {
    /// Record the next call instead of making it.
    Capture(Option<Captured>),
    /// Answer the next call with this instead of making it.
    Replay(Option<Result<Value, HandlerError>>),
}

thread_local! {
    static INTERCEPT: RefCell<Option<Intercept>> = const { RefCell::new(None) };
}

/// Called by every service call first: the captured or replayed answer
/// while a twin is running its blocking method, else `None`.
pub(crate) fn intercept(
    service: &str,
    pool: &str,
    action: &str,
    args: &Value,
) -> Option<Result<Value, HandlerError>> {
    INTERCEPT.with(|i| match &mut *i.borrow_mut() {
        None => None,
        Some(Intercept::Capture(slot)) => {
            *slot = Some((service.into(), pool.into(), action.into(), args.clone()));
            Some(Err(HandlerError::IpcError("captured".into())))
        }
        Some(Intercept::Replay(answer)) => answer.take(),
    })
}

/// Runs `op` with `mode` installed; takes it out again, also on a panic.
fn with_intercept<T>(mode: Intercept, op: impl FnOnce() -> T) -> (T, Option<Intercept>) {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            INTERCEPT.with(|i| i.borrow_mut().take());
        }
    }
    INTERCEPT.with(|i| *i.borrow_mut() = Some(mode));
    let reset = Reset;
    let value = op();
    let mode = INTERCEPT.with(|i| i.borrow_mut().take());
    drop(reset);
    (value, mode)
}

/// The twin of the blocking `op`: capture its call, await the answer,
/// replay it into `op`.
async fn twin<T>(op: impl Fn() -> Result<T, HandlerError>) -> Result<T, HandlerError> {
    let (early, mode) = with_intercept(Intercept::Capture(None), &op);
    let Some(Intercept::Capture(Some((service, pool, action, args)))) = mode else {
        // `op` answered without a call (it refused its arguments).
        return early;
    };
    let answer = crate::concurrent::call_async(&service, &pool, &action, &args).await;
    with_intercept(Intercept::Replay(Some(answer)), &op).0
}

impl DbPool {
    /// [`query`](Self::query) that awaits its answer: other requests of
    /// the worker run meanwhile. `params` as for `query` (any [`Params`]).
    ///
    /// ```
    /// use rust_edge_gateway_sdk::prelude::*;
    ///
    /// async fn handle(req: Request) -> Result<Response, HandlerError> {
    ///     let id: i64 = req.require_path_param("id")?;
    ///     let db = DbPool::new("main");
    ///     let found = db.query_async("SELECT id, body FROM notes WHERE id = ?", &[id]).await?;
    ///     Ok(Response::ok(json!({ "note": found.first() })))
    /// }
    /// ```
    pub fn query_async<'a, P: Params>(&'a self, sql: &'a str, params: P) -> Awaited<'a, DbResult> {
        let params = params.into_values();
        Box::pin(async move { twin(|| self.query(sql, &params)).await })
    }

    /// [`execute`](Self::execute) that awaits its answer.
    pub fn execute_async<'a, P: Params>(&'a self, sql: &'a str, params: P) -> Awaited<'a, u64> {
        let params = params.into_values();
        Box::pin(async move { twin(|| self.execute(sql, &params)).await })
    }

    /// [`execute_details`](Self::execute_details) that awaits its answer.
    pub fn execute_details_async<'a, P: Params>(
        &'a self,
        sql: &'a str,
        params: P,
    ) -> Awaited<'a, ExecResult> {
        let params = params.into_values();
        Box::pin(async move { twin(|| self.execute_details(sql, &params)).await })
    }

    /// [`insert`](Self::insert) that awaits its answer.
    pub fn insert_async<'a, P: Params>(
        &'a self,
        sql: &'a str,
        params: P,
    ) -> Awaited<'a, Option<i64>> {
        let params = params.into_values();
        Box::pin(async move { twin(|| self.insert(sql, &params)).await })
    }
}

impl RedisPool {
    /// [`get`](Self::get) that awaits its answer: other requests of the
    /// worker run meanwhile.
    ///
    /// ```
    /// use rust_edge_gateway_sdk::prelude::*;
    ///
    /// async fn handle(req: Request) -> Result<Response, HandlerError> {
    ///     let cache = RedisPool::new("cache");
    ///     let hit = cache.get_async(&format!("page:{}", req.path)).await?;
    ///     Ok(Response::ok(json!({ "cached": hit })))
    /// }
    /// ```
    pub async fn get_async(&self, key: &str) -> Result<Option<String>, HandlerError> {
        twin(|| self.get(key)).await
    }

    /// [`set`](Self::set) that awaits its answer.
    pub async fn set_async(&self, key: &str, value: &str) -> Result<(), HandlerError> {
        twin(|| self.set(key, value)).await
    }

    /// [`setex`](Self::setex) that awaits its answer.
    pub async fn setex_async(
        &self,
        key: &str,
        value: &str,
        seconds: u64,
    ) -> Result<(), HandlerError> {
        twin(|| self.setex(key, value, seconds)).await
    }

    /// [`set_with_ttl`](Self::set_with_ttl) that awaits its answer.
    pub async fn set_with_ttl_async(
        &self,
        key: &str,
        seconds: u64,
        value: &str,
    ) -> Result<(), HandlerError> {
        twin(|| self.set_with_ttl(key, seconds, value)).await
    }

    /// [`del`](Self::del) that awaits its answer.
    pub async fn del_async(&self, key: &str) -> Result<u64, HandlerError> {
        twin(|| self.del(key)).await
    }

    /// [`del_many`](Self::del_many) that awaits its answer.
    pub async fn del_many_async(&self, keys: &[&str]) -> Result<u64, HandlerError> {
        twin(|| self.del_many(keys)).await
    }

    /// [`incr`](Self::incr) that awaits its answer.
    pub async fn incr_async(&self, key: &str) -> Result<i64, HandlerError> {
        twin(|| self.incr(key)).await
    }

    /// [`expire`](Self::expire) that awaits its answer.
    pub async fn expire_async(&self, key: &str, seconds: u64) -> Result<bool, HandlerError> {
        twin(|| self.expire(key, seconds)).await
    }

    /// [`exists`](Self::exists) that awaits its answer.
    pub async fn exists_async(&self, key: &str) -> Result<bool, HandlerError> {
        twin(|| self.exists(key)).await
    }

    /// [`command`](Self::command) that awaits its answer.
    pub async fn command_async(&self, args: &[&str]) -> Result<Value, HandlerError> {
        twin(|| self.command(args)).await
    }
}

impl Storage {
    /// [`put_object`](Self::put_object) that awaits its answer.
    pub async fn put_object_async(
        &self,
        key: &str,
        data: &[u8],
        content_type: &str,
    ) -> Result<(), HandlerError> {
        twin(|| self.put_object(key, data, content_type)).await
    }

    /// [`get_object`](Self::get_object) that awaits its answer.
    pub async fn get_object_async(&self, key: &str) -> Result<Option<StoredObject>, HandlerError> {
        twin(|| self.get_object(key)).await
    }

    /// [`delete_object`](Self::delete_object) that awaits its answer.
    pub async fn delete_object_async(&self, key: &str) -> Result<bool, HandlerError> {
        twin(|| self.delete_object(key)).await
    }

    /// [`list_objects`](Self::list_objects) that awaits its answer.
    pub async fn list_objects_async(&self, prefix: &str) -> Result<Vec<ObjectInfo>, HandlerError> {
        twin(|| self.list_objects(prefix)).await
    }
}
