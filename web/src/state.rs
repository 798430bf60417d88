//! What every request handler shares: the config, the Redis backend, the live feed, and
//! the progress of bulk retries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::backend::Backend;
use crate::config::Config;
use crate::live::{History, Hub};

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub backend: Arc<Backend>,
    pub hub: Arc<Hub>,
    pub history: Arc<History>,
    pub bulk: Arc<Mutex<HashMap<String, BulkRetry>>>,
}

/// Progress of one queue's "retry all failed".
#[derive(Clone, Debug, Default)]
pub struct BulkRetry {
    pub total: i64,
    pub retried: i64,
    pub finished: bool,
    pub error: Option<String>,
}
