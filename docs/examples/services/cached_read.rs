// GET /products/{id} — a read-through cache: Redis first, SQLite on a miss.
// Bindings: "cache" → a Redis service, "catalog" → an SQLite service.
// The answer says where it came from in X-Cache: HIT, MISS, or BYPASS when Redis
// is unreachable (the product is still served, from the database).
use rust_edge_gateway_sdk::prelude::*;

const TTL_SECONDS: u64 = 60;

fn load(catalog: &DbPool, id: i64) -> Result<Option<JsonValue>, HandlerError> {
    catalog.execute(
        "CREATE TABLE IF NOT EXISTS products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price_cents INTEGER NOT NULL)",
        &[],
    )?;
    let result = catalog.query(
        "SELECT id, name, price_cents FROM products WHERE id = ?",
        &[json!(id)],
    )?;
    Ok(result.first().cloned())
}

fn handle(req: Request) -> Result<Response, HandlerError> {
    let id: i64 = req.require_path_param("id")?;
    let prefix = std::env::var("CACHE_PREFIX").unwrap_or_else(|_| "product".into());
    let key = format!("{prefix}:{id}");
    let cache = RedisPool::new("cache");
    let catalog = DbPool::new("catalog");

    let cached = match cache.get(&key) {
        Ok(value) => Some(value),
        Err(HandlerError::ServiceUnavailable(_)) => None, // Redis down: go to the database
        Err(other) => return Err(other),
    };
    if let Some(Some(text)) = &cached {
        let product: JsonValue = serde_json::from_str(text)?;
        return Ok(Response::ok(product).with_header("X-Cache", "HIT"));
    }
    let product = load(&catalog, id)?
        .ok_or_else(|| HandlerError::NotFoundMessage(format!("no product {id}")))?;
    let state = if cached.is_some() {
        cache.setex(&key, &product.to_string(), TTL_SECONDS)?;
        "MISS"
    } else {
        "BYPASS"
    };
    Ok(Response::ok(product).with_header("X-Cache", state))
}

handler_loop_result!(handle);
