//! The commands a worker sends about its jobs, built without sending them.

use crate::limits::ChargePlan;
use crate::providers::{ErrorClass, Failure, ProviderName};
use crate::secret::Redactor;

use super::job::Job;

/// JOB.CLAIM hands out at most this many jobs a call.
pub const MAX_CLAIM: usize = 1000;

/// What one JOB.CLAIM asks for.
#[derive(Debug, Clone, Copy)]
pub struct ClaimAsk<'a> {
    pub queue: &'a str,
    pub worker: &'a str,
    pub lease_ms: u64,
    pub count: usize,
    /// BLOCK ms: wait for a job when there is none.
    pub block_ms: Option<u64>,
}

pub fn claim(ask: ClaimAsk<'_>, plan: Option<&ChargePlan>) -> redis::Cmd {
    let mut cmd = redis::cmd("JOB.CLAIM");
    cmd.arg(ask.queue).arg("WORKER").arg(ask.worker).arg("LEASE").arg(ask.lease_ms);
    cmd.arg("COUNT").arg(ask.count.clamp(1, MAX_CLAIM));
    if let Some(b) = ask.block_ms {
        cmd.arg("BLOCK").arg(b);
    }
    for a in plan.map(|p| p.args.as_slice()).unwrap_or_default() {
        cmd.arg(a);
    }
    cmd
}

/// `JOB.UPDATE q id TOKEN t`, the start of every update a worker makes to its job (alone,
/// it is the heartbeat).
pub fn update(job: &Job) -> redis::Cmd {
    let mut cmd = redis::cmd("JOB.UPDATE");
    cmd.arg(&job.queue).arg(&job.id).arg("TOKEN").arg(&job.token);
    cmd
}

/// `calling gemini gemini-2.0-flash`: what the job is waiting on.
pub fn announce_text(provider: Option<ProviderName>, model: Option<&str>) -> String {
    let provider = ProviderName::label(provider);
    match model {
        Some(m) => format!("calling {provider} {m}"),
        None => format!("calling {provider}"),
    }
}

/// `calling openai gpt-4o-mini (fallback 1, after gemini: 503)`.
pub fn fallback_text(
    index: usize,
    from: ProviderName,
    class: &ErrorClass,
    to: ProviderName,
    model: Option<&str>,
) -> String {
    format!("{} (fallback {index}, after {from}: {})", announce_text(Some(to), model), class.as_str())
}

/// The PROGRESS update sent before the call.
pub fn progress(job: &Job, text: &str) -> redis::Cmd {
    let mut cmd = update(job);
    cmd.arg("PROGRESS").arg(text);
    cmd
}

/// The final update of a call that answered: its result and the tokens it used, settled
/// against the charges the claim took on `charges` (the keys, named with CHARGE).
pub fn done(job: &Job, result: &str, usage: u64, charges: &[String]) -> redis::Cmd {
    let mut cmd = update(job);
    cmd.arg("STATUS").arg("done").arg("RESULT").arg(result).arg("USAGE").arg(usage);
    for key in charges {
        cmd.arg("CHARGE").arg(key);
    }
    cmd
}

/// The final update of a failed call: NORETRY ends the job, DELAY sets the next try.
pub fn error(job: &Job, f: &Failure, redactor: &Redactor) -> redis::Cmd {
    let mut cmd = update(job);
    cmd.arg("STATUS").arg("error").arg("ERROR").arg(redactor.scrub(&f.message)).arg("CLASS").arg(f.class.as_str());
    if !f.retry {
        cmd.arg("NORETRY");
    } else if let Some(d) = f.delay_ms {
        cmd.arg("DELAY").arg(d);
    }
    cmd
}

/// What JOB.UPDATE ... NEXT asks for after a finish: the queue's next job, claimed as
/// JOB.CLAIM would claim it. Never BLOCK: the job tasks share one connection.
#[derive(Debug, Clone, Copy)]
pub struct NextAsk<'a> {
    pub worker: &'a str,
    pub lease_ms: u64,
}

/// Adds `NEXT WORKER w LEASE ms [CHARGE ...]` to a final update: the finish and the next
/// claim in one command.
pub fn then_next(mut cmd: redis::Cmd, ask: NextAsk<'_>, plan: Option<&ChargePlan>) -> redis::Cmd {
    cmd.arg("NEXT").arg("WORKER").arg(ask.worker).arg("LEASE").arg(ask.lease_ms);
    for a in plan.map(|p| p.args.as_slice()).unwrap_or_default() {
        cmd.arg(a);
    }
    cmd
}

/// Gives the job back without counting the attempt.
pub fn release(job: &Job) -> redis::Cmd {
    let mut cmd = redis::cmd("JOB.RELEASE");
    cmd.arg(&job.queue).arg(&job.id).arg("TOKEN").arg(&job.token);
    cmd
}

/// Gives the job back, due again in `delay_ms` (at least 1), without counting the attempt.
pub fn release_for(job: &Job, delay_ms: u64) -> redis::Cmd {
    let mut cmd = release(job);
    cmd.arg("DELAY").arg(delay_ms.max(1));
    cmd
}

/// Appends `data` to the job's output stream, as one chunk; `RESTART` first drops what the
/// attempt appended before and puts an attempt boundary (a fallback's first append).
pub fn append(job: &Job, restart: bool, data: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("JOB.APPEND");
    cmd.arg(&job.queue).arg(&job.id).arg("TOKEN").arg(&job.token);
    if restart {
        cmd.arg("RESTART");
    }
    cmd.arg("DATA").arg(data);
    cmd
}

/// `JOB.GET q id`: a job's record (a parent's result its child's claim left out).
pub fn get(queue: &str, id: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("JOB.GET");
    cmd.arg(queue).arg(id);
    cmd
}

#[cfg(test)]
pub fn words(cmd: &redis::Cmd) -> String {
    let word = |a: redis::Arg<&[u8]>| match a {
        redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Arg::Cursor => "<cursor>".into(),
    };
    cmd.args_iter().map(word).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn job() -> Job {
        Job {
            queue: "q".into(),
            id: "j".into(),
            token: "t".into(),
            payload: Vec::new(),
            attempts: 1,
            max_attempts: 3,
            cost: 1,
            charged: None,
            inputs: Vec::new(),
        }
    }

    #[test]
    fn claims_ask_for_1_to_1000_and_carry_the_charges() {
        let ask = ClaimAsk { queue: "q", worker: "w", lease_ms: 900, count: 0, block_ms: None };
        assert_eq!(words(&claim(ask, None)), "JOB.CLAIM q WORKER w LEASE 900 COUNT 1");
        let ask = ClaimAsk { count: 5000, block_ms: Some(1000), ..ask };
        let plan = ChargePlan { provider: ProviderName::Echo, args: vec!["CHARGE".into(), "k".into()] };
        assert_eq!(words(&claim(ask, Some(&plan))), "JOB.CLAIM q WORKER w LEASE 900 COUNT 1000 BLOCK 1000 CHARGE k");
    }

    #[test]
    fn updates_are_fenced_by_the_token() {
        assert_eq!(words(&update(&job())), "JOB.UPDATE q j TOKEN t");
        assert_eq!(words(&progress(&job(), "calling echo")), "JOB.UPDATE q j TOKEN t PROGRESS calling echo");
        assert_eq!(words(&done(&job(), "{}", 12, &[])), "JOB.UPDATE q j TOKEN t STATUS done RESULT {} USAGE 12");
        assert_eq!(
            words(&done(&job(), "{}", 12, &["tpm:{q}".to_string()])),
            "JOB.UPDATE q j TOKEN t STATUS done RESULT {} USAGE 12 CHARGE tpm:{q}"
        );
        assert_eq!(words(&release(&job())), "JOB.RELEASE q j TOKEN t");
        let next = then_next(done(&job(), "{}", 12, &[]), NextAsk { worker: "w", lease_ms: 900 }, None);
        assert_eq!(words(&next), "JOB.UPDATE q j TOKEN t STATUS done RESULT {} USAGE 12 NEXT WORKER w LEASE 900");
        let plan = ChargePlan { provider: ProviderName::Echo, args: vec!["CHARGE".into(), "k".into()] };
        let next = then_next(release(&job()), NextAsk { worker: "w", lease_ms: 900 }, Some(&plan));
        assert!(words(&next).ends_with("NEXT WORKER w LEASE 900 CHARGE k"));
        assert_eq!(words(&release_for(&job(), 2500)), "JOB.RELEASE q j TOKEN t DELAY 2500");
        assert_eq!(words(&release_for(&job(), 0)), "JOB.RELEASE q j TOKEN t DELAY 1");
        assert_eq!(words(&append(&job(), false, "Hi")), "JOB.APPEND q j TOKEN t DATA Hi");
        assert_eq!(words(&append(&job(), true, "Hi")), "JOB.APPEND q j TOKEN t RESTART DATA Hi");
        assert_eq!(words(&get("q", "p1")), "JOB.GET q p1");
    }

    #[test]
    fn progress_texts_name_provider_model_and_why_it_fell_back() {
        assert_eq!(announce_text(Some(ProviderName::Gemini), Some("g-2")), "calling gemini g-2");
        assert_eq!(announce_text(None, None), "calling unknown");
        let class = ErrorClass::Status(reqwest::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            fallback_text(1, ProviderName::Gemini, &class, ProviderName::OpenAi, Some("gpt-4o-mini")),
            "calling openai gpt-4o-mini (fallback 1, after gemini: 503)"
        );
        assert_eq!(
            fallback_text(2, ProviderName::OpenAi, &ErrorClass::Cooldown, ProviderName::Echo, None),
            "calling echo (fallback 2, after openai: cooldown)"
        );
    }

    #[test]
    fn errors_say_whether_and_when_to_retry_and_hold_no_secret() {
        let r = Redactor::new([Secret::new("sk-123456")]);
        let fatal = Failure::fatal(ErrorClass::Payload, "bad sk-123456");
        assert_eq!(
            words(&error(&job(), &fatal, &r)),
            "JOB.UPDATE q j TOKEN t STATUS error ERROR bad [redacted] CLASS payload NORETRY"
        );
        let later = Failure { delay_ms: Some(1500), ..Failure::retry(ErrorClass::Timeout, "slow") };
        assert!(words(&error(&job(), &later, &r)).ends_with("CLASS timeout DELAY 1500"));
        let soon = Failure::retry(ErrorClass::Network, "x");
        assert!(words(&error(&job(), &soon, &r)).ends_with("CLASS network"));
    }
}
