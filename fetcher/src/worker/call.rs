//! Calling the provider a job names: its budgets first (unless the claim charged them), then
//! the call, bounded by --timeout and timed for the latency histogram.

use std::sync::Arc;
use std::time::Instant;

use tracing::warn;

use crate::providers::{Call, ErrorClass, Failure, Provider, ProviderName, Success};

use super::job::Job;
use super::shared::Shared;

/// Reads the call and makes it. Returns the call (when the payload was readable) and how
/// it ended.
pub async fn execute(
    sh: &Shared,
    parsed: Result<Call, Failure>,
    job: &Job,
) -> (Option<Call>, Result<Success, Failure>) {
    let call = match parsed {
        Ok(c) => c,
        Err(f) => return (None, Err(f)),
    };
    let r = call_provider(sh, &call, job).await;
    (Some(call), r)
}

async fn call_provider(sh: &Shared, call: &Call, job: &Job) -> Result<Success, Failure> {
    let provider = sh.providers.get(call.provider)?;
    if charged_per_call(job.charged, call.provider) {
        if let Some(bound) = job.charged {
            warn!(queue = %job.queue, id = %job.id, %bound, provider = %call.provider, "the job names another provider than its queue's --queue-provider: charged per call too");
        }
        sh.limits.acquire(&job.queue, call.provider, job.cost).await?;
    }
    timed_call(sh, call, provider).await
}

/// A charged claim already took the budgets of the provider it was bound to; a call to any
/// other provider (or after an uncharged claim) takes them itself.
pub fn charged_per_call(charged: Option<ProviderName>, provider: ProviderName) -> bool {
    charged != Some(provider)
}

async fn timed_call(sh: &Shared, call: &Call, provider: Arc<dyn Provider>) -> Result<Success, Failure> {
    let t = Instant::now();
    let r = match tokio::time::timeout(sh.cfg.timeout, provider.call(call)).await {
        Ok(r) => r,
        Err(_) => Err(Failure::retry(ErrorClass::Timeout, "the provider did not answer within the timeout")),
    };
    sh.metrics.call(call.provider, t.elapsed());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_charged_provider_skips_the_per_call_budget() {
        assert!(!charged_per_call(Some(ProviderName::Gemini), ProviderName::Gemini));
        assert!(charged_per_call(Some(ProviderName::Gemini), ProviderName::OpenAi));
        assert!(charged_per_call(None, ProviderName::Gemini));
    }
}
