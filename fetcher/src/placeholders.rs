//! A flow's results in the request: the placeholders that insert a parent's answer into
//! the request of the job that waited on it (README, "Flows: a parent's result in the
//! request"). Pure: the parents come from the claim reply's `inputs` (`worker/job.rs`; a
//! result the claim left out is read with JOB.GET first, `worker/inputs.rs`).
//!
//! ```text
//! {{parents.N.text}}      the answer text of parent N (0-based, in AFTER order)
//! {{parents.N.result}}    its whole stored result, as text
//! {{parents.N.error}}     its error (a parent that ended error, under ONPARENTFAIL run)
//! {{parents[id].text}}    the same, naming the parent by its id
//! ```
//!
//! Every JSON string value of each call's request is scanned once, left to right; what a
//! placeholder inserts is not scanned again, so a parent's output cannot smuggle in a
//! placeholder. Spaces inside the braces are allowed (`{{ parents.0.text }}`). Only a `{{`
//! followed by `parents.` or `parents[` starts a placeholder; every other text is sent as it
//! is. `{{{{parents` is the literal text `{{parents`. A placeholder that cannot be filled
//! (malformed, a parent the job does not have, a parent without what it names) ends the job
//! at once, class `input`: the call is never made with a hole in its request.

use std::cell::OnceCell;

use serde_json::Value;

use crate::providers::{ErrorClass, Failure, Plan};
use crate::text::truncate;

/// One parent's outcome, as the claim reply's `inputs` gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Input {
    pub id: String,
    /// `done`, `error`, `canceled` or `deleted` (empty when the reply did not say).
    pub status: String,
    /// The parent's stored result (a done parent).
    pub result: Option<Vec<u8>>,
    /// The result's length, given instead of the result when it did not fit in the claim's
    /// budget (`aijob.max-payload-bytes` for all of a job's inputs): read it with JOB.GET.
    pub result_bytes: Option<u64>,
    /// The parent's error text (a parent that ended error).
    pub error: Option<String>,
}

/// What a placeholder inserts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    /// The result's `text` (the fetcher's results carry the answer there).
    Text,
    /// The whole result.
    Result,
    /// The error of a parent that ended error.
    Error,
}

/// Which parent a placeholder names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Parent<'a> {
    Index(usize),
    Id(&'a str),
}

/// Fills the placeholders of every leg's request of `plan` (the job's own and its
/// fallbacks', given or translated).
pub fn fill_plan(mut plan: Plan, inputs: &[Input]) -> Result<Plan, Failure> {
    let texts = Texts::new(inputs);
    for leg in &mut plan.legs {
        fill_value(&mut leg.request, &texts)?;
    }
    Ok(plan)
}

/// The parents (indexes into `inputs`) whose result some leg's request names with `.text`
/// or `.result`, in order, each once. A placeholder that names no parent of the job, or
/// cannot be read, names none here: filling it fails anyway.
pub fn results_named(plan: &Plan, inputs: &[Input]) -> Vec<usize> {
    let mut named = Vec::new();
    let mut note = |inner: &str| {
        if let Some((parent, Field::Text | Field::Result)) = parse(inner) {
            named.extend(find(&parent, inputs).map(|(i, _)| i));
        }
        Ok(String::new())
    };
    for leg in &plan.legs {
        strings(&leg.request, &mut |s| {
            // An unclosed placeholder fails the fill; what came before it is noted.
            let _ = scan(s, &mut note);
        });
    }
    named.sort_unstable();
    named.dedup();
    named
}

/// Calls `f` on every string value in `v`, at any depth (object keys are not values).
fn strings(v: &Value, f: &mut impl FnMut(&str)) {
    match v {
        Value::String(s) if s.contains(START) => f(s),
        Value::Array(items) => items.iter().for_each(|i| strings(i, f)),
        Value::Object(members) => members.values().for_each(|m| strings(m, f)),
        _ => {}
    }
}

/// Fills the placeholders of every string value in `v` (object keys are left as they are).
fn fill_value(v: &mut Value, texts: &Texts) -> Result<(), Failure> {
    match v {
        Value::String(s) if s.contains("{{") => *s = fill_str(s, texts)?,
        Value::Array(items) => items.iter_mut().try_for_each(|i| fill_value(i, texts))?,
        Value::Object(members) => members.values_mut().try_for_each(|m| fill_value(m, texts))?,
        _ => {}
    }
    Ok(())
}

/// The parents, with each one's answer text read from its result at most once.
struct Texts<'a> {
    inputs: &'a [Input],
    texts: Vec<OnceCell<Option<String>>>,
}

impl<'a> Texts<'a> {
    fn new(inputs: &'a [Input]) -> Texts<'a> {
        Texts { inputs, texts: inputs.iter().map(|_| OnceCell::new()).collect() }
    }

    /// The `text` string of parent `i`'s result, when it is a JSON object that has one.
    fn text(&self, i: usize) -> Option<&str> {
        let cell = self.texts.get(i)?;
        let text = cell.get_or_init(|| {
            let result = self.inputs.get(i)?.result.as_deref()?;
            let v: Value = serde_json::from_slice(result).ok()?;
            v.get("text")?.as_str().map(str::to_string)
        });
        text.as_deref()
    }
}

const START: &str = "{{";
const ESCAPED_START: &str = "{{{{";

/// True when `s` (the text right after a `{{`) begins a placeholder.
fn starts_placeholder(s: &str) -> bool {
    let s = s.trim_start_matches(' ');
    s.starts_with("parents.") || s.starts_with("parents[")
}

fn fill_str(s: &str, texts: &Texts) -> Result<String, Failure> {
    scan(s, &mut |inner| insert(inner, texts))
}

/// `s` with each placeholder replaced by what `on` makes of its inside (trimmed), the
/// escape `{{{{parents` by `{{parents`, and every other text as it is.
fn scan(s: &str, on: &mut impl FnMut(&str) -> Result<String, Failure>) -> Result<String, Failure> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find(START) {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        if let Some(after) = from.strip_prefix(ESCAPED_START).filter(|a| starts_placeholder(a)) {
            out.push_str(START);
            rest = after;
        } else if let Some(after) = from.strip_prefix(START).filter(|a| starts_placeholder(a)) {
            let (inner, after) = after.split_once("}}").ok_or_else(|| unclosed(from))?;
            out.push_str(&on(inner.trim_matches(' '))?);
            rest = after;
        } else {
            out.push('{');
            rest = &from[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn input_error(message: String) -> Failure {
    Failure::fatal(ErrorClass::Input, message)
}

fn unclosed(from: &str) -> Failure {
    input_error(format!("the placeholder {} has no closing }}}}", truncate(from, 60)))
}

/// `parents.N.field` or `parents[id].field`, as its parent and field.
fn parse(inner: &str) -> Option<(Parent<'_>, Field)> {
    let rest = inner.strip_prefix("parents")?;
    let (parent, field) = if let Some(r) = rest.strip_prefix('[') {
        let (id, field) = r.split_once("].")?;
        (Parent::Id(id), field)
    } else {
        let (n, field) = rest.strip_prefix('.')?.split_once('.')?;
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // An index too large for usize names no parent either.
        (Parent::Index(n.parse().unwrap_or(usize::MAX)), field)
    };
    let field = match field {
        "text" => Field::Text,
        "result" => Field::Result,
        "error" => Field::Error,
        _ => return None,
    };
    Some((parent, field))
}

/// What the placeholder `{{inner}}` stands for.
fn insert(inner: &str, texts: &Texts) -> Result<String, Failure> {
    let shown = format!("{{{{{}}}}}", truncate(inner, 160));
    let fail = |why: String| input_error(format!("{shown}: {why}"));
    let (parent, field) = parse(inner).ok_or_else(|| {
        fail("not a placeholder: write {{parents.N.text}}, .result or .error (N from 0, in AFTER order), or {{parents[id].text}}".into())
    })?;
    let (i, input) = find(&parent, texts.inputs).ok_or_else(|| fail(missing(&parent, texts.inputs.len())))?;
    value(field, i, input, texts).map_err(fail)
}

/// The parent a placeholder names, with its index.
fn find<'i>(parent: &Parent, inputs: &'i [Input]) -> Option<(usize, &'i Input)> {
    match parent {
        Parent::Index(i) => inputs.get(*i).map(|input| (*i, input)),
        Parent::Id(id) => inputs.iter().enumerate().find(|(_, input)| input.id == *id),
    }
}

/// Parent `i`'s `field`, or why it has none.
fn value(field: Field, i: usize, input: &Input, texts: &Texts) -> Result<String, String> {
    let named = format!("parent {i} ({})", input.id);
    let status = if input.status.is_empty() { "unknown" } else { input.status.as_str() };
    match field {
        Field::Error => input
            .error
            .clone()
            .ok_or_else(|| format!("{named} has status {status} and no error text (only a failed parent has one)")),
        _ if input.status != "done" => {
            let why = input.error.as_deref().map(|e| format!(": {}", truncate(e, 200))).unwrap_or_default();
            Err(format!("{named} has status {status} (not done), so no result{why}"))
        }
        _ if input.result.is_none() && input.result_bytes.is_some() => {
            let bytes = input.result_bytes.unwrap_or_default();
            Err(format!("{named}'s result ({bytes} bytes) was not in the claim (its inputs are bounded by aijob.max-payload-bytes) and could not be read with JOB.GET"))
        }
        Field::Result => String::from_utf8(input.result.clone().unwrap_or_default())
            .map_err(|_| format!("{named}'s result is not UTF-8 text")),
        Field::Text => texts.text(i).map(str::to_string).ok_or_else(|| {
            format!("{named}'s result has no \"text\" (an answer without text, or a result the fetcher did not write): use .result")
        }),
    }
}

/// Why a placeholder's parent is not one of the job's.
fn missing(parent: &Parent, count: usize) -> String {
    let has = match count {
        0 => "the job has no parents (JOB.CREATE ... AFTER)".to_string(),
        1 => "the job has 1 parent".to_string(),
        n => format!("the job has {n} parents"),
    };
    match parent {
        Parent::Index(_) => format!("no such parent: {has}"),
        Parent::Id(id) => format!("{} is not a parent of this job: {has}", truncate(id, 128)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fill(v: &mut Value, inputs: &[Input]) -> Result<(), Failure> {
        fill_value(v, &Texts::new(inputs))
    }

    fn done(id: &str, text: &str) -> Input {
        let result = json!({"provider": "echo", "text": text}).to_string().into_bytes();
        Input { id: id.into(), status: "done".into(), result: Some(result), ..Input::default() }
    }

    fn failed(id: &str, error: &str) -> Input {
        Input { id: id.into(), status: "error".into(), error: Some(error.into()), ..Input::default() }
    }

    fn filled(s: &str, inputs: &[Input]) -> Result<String, Failure> {
        let mut v = Value::String(s.into());
        fill(&mut v, inputs)?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    fn refused(s: &str, inputs: &[Input]) -> String {
        let f = filled(s, inputs).unwrap_err();
        assert_eq!((f.class, f.retry), (ErrorClass::Input, false), "{s}");
        f.message
    }

    #[test]
    fn placeholders_insert_the_parents_text_by_position_or_id() {
        let inputs = [done("a", "first"), done("b.1:x", "second")];
        assert_eq!(filled("1: {{parents.0.text}}; 2: {{parents.1.text}}", &inputs).unwrap(), "1: first; 2: second");
        assert_eq!(filled("{{parents[b.1:x].text}}{{parents[a].text}}", &inputs).unwrap(), "secondfirst");
        assert_eq!(filled("{{ parents.1.text  }}!", &inputs).unwrap(), "second!");
        assert_eq!(filled("{{parents.0.text}}{{parents.0.text}}", &inputs).unwrap(), "firstfirst");
    }

    #[test]
    fn every_string_of_the_request_is_filled_and_nothing_else() {
        let mut request = json!({
            "contents": [{"role": "user", "parts": [{"text": "Improve: {{parents.0.text}}"}]}],
            "{{parents.0.text}}": 1,
            "n": 3,
            "stop": ["{{parents.0.text}}", null, true]
        });
        fill(&mut request, &[done("a", "a sketch")]).unwrap();
        assert_eq!(request["contents"][0]["parts"][0]["text"], "Improve: a sketch");
        assert_eq!(request["stop"], json!(["a sketch", null, true]));
        assert_eq!(request["{{parents.0.text}}"], 1, "object keys are not filled");
        assert_eq!(request["n"], 3);
    }

    #[test]
    fn result_is_the_whole_stored_result_and_error_a_failed_parents_error() {
        let raw =
            Input { id: "r".into(), status: "done".into(), result: Some(b"[1,\"two\"]".to_vec()), ..Input::default() };
        let inputs = [done("a", "t"), failed("b", "HTTP 400: bad"), raw];
        let whole = filled("{{parents.0.result}}", &inputs).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&whole).unwrap(), json!({"provider": "echo", "text": "t"}));
        assert_eq!(filled("why: {{parents.1.error}}", &inputs).unwrap(), "why: HTTP 400: bad");
        assert_eq!(filled("{{parents[r].result}}", &inputs).unwrap(), "[1,\"two\"]");
        let empty = Input { id: "e".into(), status: "done".into(), result: None, ..Input::default() };
        assert_eq!(filled("<{{parents.0.result}}>", &[empty]).unwrap(), "<>", "a done parent without a result");
    }

    #[test]
    fn inserted_text_is_not_scanned_again() {
        let inputs = [done("a", "{{parents.1.text}} and {{parents.9.error}} {{"), done("b", "secret")];
        assert_eq!(filled("{{parents.0.text}}", &inputs).unwrap(), "{{parents.1.text}} and {{parents.9.error}} {{");
    }

    #[test]
    fn other_braces_pass_as_they_are_and_four_braces_escape_a_placeholder() {
        let inputs = [done("a", "T")];
        for s in ["{{name}}", "{{ parent.0.text }}", "{{parentsX}}", "{ {{{ }} }}", "{{", "}}", "a{b}c", "é{{ü}}"] {
            assert_eq!(filled(s, &inputs).unwrap(), s);
        }
        assert_eq!(filled("{{{{parents.0.text}}", &inputs).unwrap(), "{{parents.0.text}}");
        assert_eq!(filled("{{{{ parents[a].text}} = {{parents.0.text}}", &inputs).unwrap(), "{{ parents[a].text}} = T");
        assert_eq!(filled("{{{parents.0.text}}}", &inputs).unwrap(), "{T}");
        assert_eq!(filled("{{{{{{", &inputs).unwrap(), "{{{{{{");
    }

    #[test]
    fn a_placeholder_naming_a_parent_the_job_lacks_ends_the_job() {
        let m = refused("{{parents.0.text}}", &[]);
        assert!(m.contains("{{parents.0.text}}") && m.contains("no parents"), "{m}");
        let m = refused("{{parents.2.text}}", &[done("a", "x"), done("b", "y")]);
        assert!(m.contains("no such parent") && m.contains("2 parents"), "{m}");
        let m = refused("{{parents.99999999999999999999999.text}}", &[done("a", "x")]);
        assert!(m.contains("1 parent"), "{m}");
        let m = refused("{{parents[zz].text}}", &[done("a", "x")]);
        assert!(m.contains("zz is not a parent"), "{m}");
    }

    #[test]
    fn a_parent_that_did_not_end_done_has_no_text_or_result() {
        let inputs = [
            failed("a", "HTTP 500: down"),
            Input { id: "c".into(), status: "canceled".into(), ..Input::default() },
            done("d", "fine"),
        ];
        let m = refused("{{parents.0.text}}", &inputs);
        assert!(m.contains("parent 0 (a) has status error (not done)") && m.contains("HTTP 500: down"), "{m}");
        let m = refused("{{parents.1.result}}", &inputs);
        assert!(m.contains("parent 1 (c) has status canceled"), "{m}");
        let m = refused("{{parents.1.error}}", &inputs);
        assert!(m.contains("has status canceled and no error text"), "{m}");
        let m = refused("{{parents.2.error}}", &inputs);
        assert!(m.contains("parent 2 (d) has status done and no error text"), "{m}");
    }

    #[test]
    fn a_result_without_text_needs_result() {
        let image = Input {
            id: "i".into(),
            status: "done".into(),
            result: Some(br#"{"output":{}}"#.to_vec()),
            ..Input::default()
        };
        let not_json =
            Input { id: "n".into(), status: "done".into(), result: Some(b"plain".to_vec()), ..Input::default() };
        let binary =
            Input { id: "b".into(), status: "done".into(), result: Some(vec![0xff, 0xfe]), ..Input::default() };
        let inputs = [image, not_json, binary];
        assert!(refused("{{parents.0.text}}", &inputs).contains("has no \"text\""));
        assert!(refused("{{parents.1.text}}", &inputs).contains("use .result"));
        assert_eq!(filled("{{parents.1.result}}", &inputs).unwrap(), "plain");
        assert!(refused("{{parents.2.result}}", &inputs).contains("not UTF-8"));
    }

    #[test]
    fn a_result_left_out_of_the_claim_and_not_read_fails_with_why() {
        let left_out = Input { id: "big".into(), status: "done".into(), result_bytes: Some(9000), ..Input::default() };
        let inputs = [done("a", "x"), left_out];
        for s in ["{{parents.1.text}}", "{{parents[big].result}}"] {
            let m = refused(s, &inputs);
            assert!(m.contains("parent 1 (big)'s result (9000 bytes) was not in the claim"), "{s}: {m}");
            assert!(m.contains("could not be read with JOB.GET"), "{s}: {m}");
        }
        let read = Input { result: Some(br#"{"text":"late"}"#.to_vec()), ..inputs[1].clone() };
        assert_eq!(filled("{{parents.1.text}}", &[done("a", "x"), read]).unwrap(), "late", "once read, it fills");
    }

    fn plan_of(request: Value) -> Plan {
        let payload = json!({"provider": "echo", "request": request}).to_string();
        crate::providers::parse_plan(payload.as_bytes(), &Default::default()).unwrap()
    }

    #[test]
    fn results_named_lists_the_parents_whose_text_or_result_a_request_uses() {
        let inputs = [done("a", "x"), done("b", "y"), done("c", "z"), done("d", "w")];
        let plan = plan_of(json!({
            "text": "{{parents.2.text}} {{parents[a].result}} {{ parents.2.result }}",
            "deep": [{"x": "{{parents.1.error}} {{{{parents.3.text}}"}],
            "{{parents.1.text}}": "a key is not a value"
        }));
        assert_eq!(results_named(&plan, &inputs), [0, 2], "error, escaped text and keys name none");
        let none = plan_of(json!({"text": "{{name}} {{parents.9.text}} {{parents[zz].text}} {{parents.0.txt}}"}));
        assert!(results_named(&none, &inputs).is_empty());
        let unclosed =
            plan_of(json!({"text": "{{parents.1.text}} then {{parents.0.text", "more": "{{parents.3.result}}"}));
        assert_eq!(results_named(&unclosed, &inputs), [1, 3]);
        assert!(results_named(&plan, &[]).is_empty(), "no parents, none named");
    }

    #[test]
    fn results_named_reads_every_leg() {
        let payload = br#"{"provider":"gemini","model":"g","request":{"contents":[{"parts":[{"text":"hi"}]}]},
            "fallback":[{"provider":"echo","request":{"text":"{{parents[b].text}}"}}]}"#;
        let plan = crate::providers::parse_plan(payload, &Default::default()).unwrap();
        assert_eq!(results_named(&plan, &[done("a", "x"), done("b", "y")]), [1]);
    }

    #[test]
    fn malformed_placeholders_end_the_job() {
        let inputs = [done("a", "x")];
        for s in [
            "{{parents.0.txt}}",
            "{{parents.0}}",
            "{{parents.}}",
            "{{parents.-1.text}}",
            "{{parents.0.text.more}}",
            "{{parents[a]text}}",
            "{{parents.0.text and more}}",
            "{{parents.a.text}}",
        ] {
            let m = refused(s, &inputs);
            assert!(m.contains("not a placeholder"), "{s}: {m}");
        }
        let m = refused("ok {{parents.0.text} no end", &inputs);
        assert!(m.contains("has no closing }}"), "{m}");
    }

    #[test]
    fn every_leg_of_a_plan_is_filled() {
        let payload = br#"{"provider":"gemini","model":"g","request":{"contents":[{"parts":[{"text":"Fix: {{parents.0.text}}"}]}]},
            "fallback":[{"provider":"openai","model":"o"},{"provider":"echo","request":{"text":"{{parents[a].result}}"}}]}"#;
        let plan = || crate::providers::parse_plan(payload, &Default::default()).unwrap();
        let filled = fill_plan(plan(), &[done("a", "v1")]).unwrap();
        assert_eq!(filled.legs[0].request["contents"][0]["parts"][0]["text"], "Fix: v1");
        assert_eq!(filled.legs[1].request["messages"][0]["content"], "Fix: v1", "a translated request is filled too");
        assert!(filled.legs[2].request["text"].as_str().unwrap().contains("\"text\":\"v1\""));
        assert_eq!(filled.legs[2].payload["request"]["text"], "{{parents[a].result}}", "only requests are filled");
        let f = fill_plan(plan(), &[]).unwrap_err();
        assert_eq!(f.class, ErrorClass::Input);
    }
}
