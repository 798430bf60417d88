//! RFC 8785 JSON Canonicalization Scheme (JCS): the byte form whose SHA-256 is a
//! payload's content hash, so it must match what every other JCS implementation
//! produces for the same JSON, byte for byte.
//!
//! The input is first held to `json::validate`, the rules of every JSON input (I-JSON as
//! RFC 8785 asks: no duplicate names, no lone surrogates, no number beyond a double; the
//! size and depth limits), then read again with the same `json::Reader` into a flat tree
//! and written out with an explicit stack: no recursion, so the depth limit is a config,
//! not a guard for the call stack.

use std::cmp::Ordering;
use std::ops::Range;

use crate::error::{AiError, Result};
use crate::json::{self, Limits, Reader, Token};

/// The canonical form of a JSON text (RFC 8785); `arg` names the input in errors.
pub fn canonicalize(arg: &str, input: &[u8], limits: Limits) -> Result<Vec<u8>> {
    json::validate(arg, input, limits)?;
    let tree = Tree::read(input, limits.max_depth).ok_or_else(|| AiError::arg(arg, "could not be canonicalized"))?;
    let mut out = Vec::with_capacity(input.len());
    tree.write(&mut out).ok_or_else(|| AiError::arg(arg, "could not be canonicalized"))?;
    Ok(out)
}

/// One value of the tree. Ranges index `Tree::text` (leaves) or `Tree::kids`.
#[derive(Debug, Clone)]
enum Node {
    /// Text written as it is: a number in its ES form, true, false, null.
    Literal(Range<usize>),
    /// A string's unescaped UTF-8, escaped again on the way out.
    Str(Range<usize>),
    Array(Range<usize>),
    /// Name and value node ids, alternating, members already in JCS order.
    Object(Range<usize>),
}

/// A JSON value as flat arrays: children are node ids in `kids`, leaves bytes in `text`.
struct Tree {
    nodes: Vec<Node>,
    kids: Vec<usize>,
    text: Vec<u8>,
}

impl Tree {
    /// Reads a JSON text that passed `json::validate`; None if it somehow does not parse.
    fn read(input: &[u8], max_depth: i64) -> Option<Tree> {
        let mut reader = Reader::new(input, max_depth).ok()?;
        let mut tree = Tree { nodes: Vec::new(), kids: Vec::new(), text: Vec::with_capacity(input.len()) };
        // The finished children of every open container (`done`), where each open
        // container's children start (`open`), and a reusable buffer for sorting members.
        let mut done: Vec<usize> = Vec::new();
        let mut open: Vec<usize> = Vec::new();
        let mut members: Vec<(usize, usize)> = Vec::new();
        while let Some(token) = reader.next_token().ok()? {
            let node = match token {
                Token::BeginObject | Token::BeginArray => {
                    open.push(done.len());
                    continue;
                }
                Token::EndArray => {
                    let start = open.pop()?;
                    let first = tree.kids.len();
                    tree.kids.extend(done.drain(start..));
                    Node::Array(first..tree.kids.len())
                }
                Token::EndObject => {
                    let start = open.pop()?;
                    members.clear();
                    let pairs = done.get(start..)?.chunks_exact(2);
                    members.extend(pairs.filter_map(|p| match p {
                        [name, value] => Some((*name, *value)),
                        _ => None,
                    }));
                    done.truncate(start);
                    members.sort_by(|a, b| tree.utf16_order(a.0, b.0));
                    let first = tree.kids.len();
                    tree.kids.extend(members.iter().flat_map(|&(name, value)| [name, value]));
                    Node::Object(first..tree.kids.len())
                }
                Token::Name(t) | Token::Str(t) => {
                    let start = tree.text.len();
                    t.unescape_into(&mut tree.text);
                    Node::Str(start..tree.text.len())
                }
                Token::Number(n) => tree.literal(es_number(n.parse::<f64>().ok()?)?.as_bytes()),
                Token::Bool(true) => tree.literal(b"true"),
                Token::Bool(false) => tree.literal(b"false"),
                Token::Null => tree.literal(b"null"),
            };
            tree.nodes.push(node);
            done.push(tree.nodes.len() - 1);
        }
        (done.len() == 1 && open.is_empty()).then_some(tree)
    }

    fn literal(&mut self, bytes: &[u8]) -> Node {
        let start = self.text.len();
        self.text.extend_from_slice(bytes);
        Node::Literal(start..self.text.len())
    }

    fn str_of(&self, node: usize) -> &str {
        match self.nodes.get(node) {
            Some(Node::Str(r)) => self.text.get(r.clone()).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or(""),
            _ => "",
        }
    }

    /// JCS orders names by UTF-16 code units, which differs from UTF-8 byte order once a
    /// name holds both U+E000..U+FFFF and characters above U+FFFF.
    fn utf16_order(&self, a: usize, b: usize) -> Ordering {
        self.str_of(a).encode_utf16().cmp(self.str_of(b).encode_utf16())
    }

    /// Writes the root (the last node read) with an explicit stack of work.
    fn write(&self, out: &mut Vec<u8>) -> Option<()> {
        enum Work {
            Node(usize),
            Byte(u8),
        }
        let mut work = vec![Work::Node(self.nodes.len().checked_sub(1)?)];
        while let Some(item) = work.pop() {
            let node = match item {
                Work::Byte(b) => {
                    out.push(b);
                    continue;
                }
                Work::Node(i) => self.nodes.get(i)?,
            };
            match node {
                Node::Literal(r) => out.extend_from_slice(self.text.get(r.clone())?),
                Node::Str(r) => write_string(self.text.get(r.clone())?, out),
                Node::Array(r) => {
                    out.push(b'[');
                    work.push(Work::Byte(b']'));
                    for (k, &kid) in self.kids.get(r.clone())?.iter().enumerate().rev() {
                        work.push(Work::Node(kid));
                        if k > 0 {
                            work.push(Work::Byte(b','));
                        }
                    }
                }
                Node::Object(r) => {
                    out.push(b'{');
                    work.push(Work::Byte(b'}'));
                    for (k, pair) in self.kids.get(r.clone())?.chunks_exact(2).enumerate().rev() {
                        let (&name, &value) = (pair.first()?, pair.get(1)?);
                        work.extend([Work::Node(value), Work::Byte(b':'), Work::Node(name)]);
                        if k > 0 {
                            work.push(Work::Byte(b','));
                        }
                    }
                }
            }
        }
        Some(())
    }
}

/// Escapes only what JSON requires. Working on bytes is safe: every byte that needs
/// an escape is ASCII, and bytes of multi-byte UTF-8 sequences are all >= 0x80, so
/// non-ASCII text passes through literally as RFC 8785 asks.
fn write_string(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    let mut rest = s;
    while let Some(at) = rest.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20) {
        let (plain, tail) = rest.split_at(at);
        out.extend_from_slice(plain);
        let Some((&b, after)) = tail.split_first() else { break };
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
        }
        rest = after;
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

/// ECMAScript Number.prototype.toString (ECMA-262 Number::toString, RFC 8785 3.2.2.3).
/// None only for NaN and infinities, which JSON text cannot produce.
pub fn es_number(f: f64) -> Option<String> {
    if !f.is_finite() {
        return None;
    }
    // Both zeros print as "0" (ES drops the sign of -0).
    if f == 0.0 {
        return Some("0".to_string());
    }
    let (digits, n) = shortest_digits(f.abs())?;
    let digits = even_on_tie(f.abs(), digits, n);
    let body = layout(&digits, n)?;
    Some(if f < 0.0 { format!("-{body}") } else { body })
}

/// The shortest digit string `s` (no trailing zeros) and the exponent `n` with
/// f = 0.s × 10^n, as ES defines them. Rust's `{:e}` already prints the shortest digits
/// that round-trip, the closest of them to f, as `d[.ddd]e<exp>`; it differs from ES
/// only on exact ties (see `even_on_tie`) and in the layout.
fn shortest_digits(f: f64) -> Option<(String, i32)> {
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e')?;
    let exp: i32 = exp.parse().ok()?;
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits, exp.checked_add(1)?))
}

/// ES breaks an exact tie between two shortest candidates towards the even one; Rust
/// rounds it up (0x43143ff3c1cb0959 = 1424953923781206.25 prints as ...206.3, ES
/// wants ...206.2). A tie means f is exactly `head` followed by a 5, so only then do
/// we switch, and only to a candidate that still reads back as f.
fn even_on_tie(f: f64, digits: String, n: i32) -> String {
    match tied_even(f, &digits, n) {
        Some(even) if even != digits => even,
        _ => digits,
    }
}

fn tied_even(f: f64, digits: &str, n: i32) -> Option<String> {
    let k = digits.len();
    if digits.bytes().last()? % 2 == 0 {
        return None;
    }
    // Cheap filter first: k + 1 correctly rounded digits end in 5 whenever f is a tie.
    let near = format!("{f:.k$e}");
    if !near.split_once('e')?.0.ends_with('5') {
        return None;
    }
    let (exact, exact_n) = exact_digits(f)?;
    let (head, tail) = exact.split_at_checked(k)?;
    if tail != "5" || exact_n != n {
        return None;
    }
    let even = even_neighbour(head)?;
    let reads_back = format!("0.{even}e{n}").parse::<f64>().ok()? == f;
    (reads_back && !even.ends_with('0')).then_some(even)
}

/// The exact decimal expansion of f, without trailing zeros. A double has at most 767
/// significant digits, so asking for 800 leaves Rust nothing to round.
fn exact_digits(f: f64) -> Option<(String, i32)> {
    let sci = format!("{f:.800e}");
    let (mantissa, exp) = sci.split_once('e')?;
    let exp: i32 = exp.parse().ok()?;
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    Some((digits.trim_end_matches('0').to_string(), exp.checked_add(1)?))
}

/// Of `head` and `head + 1` (in the last digit), the even one; None on a carry, which
/// would end in 0 and so not be a shortest candidate.
fn even_neighbour(head: &str) -> Option<String> {
    let (rest, last) = head.split_at_checked(head.len().checked_sub(1)?)?;
    let last = last.bytes().next()?;
    match last {
        b'0' | b'2' | b'4' | b'6' | b'8' => Some(head.to_string()),
        b'1' | b'3' | b'5' | b'7' => Some(format!("{rest}{}", char::from(last + 1))),
        _ => None,
    }
}

/// The four cases of ES Number::toString, steps 6 to 10, for digits s of length k.
fn layout(digits: &str, n: i32) -> Option<String> {
    let k = i32::try_from(digits.len()).ok()?;
    if k <= n && n <= 21 {
        // An integer: digits padded with zeros, never an exponent below 1e21.
        return Some(format!("{digits}{}", "0".repeat(usize::try_from(n - k).ok()?)));
    }
    if 0 < n && n <= 21 {
        let (int, frac) = digits.split_at_checked(usize::try_from(n).ok()?)?;
        return Some(format!("{int}.{frac}"));
    }
    if -6 < n && n <= 0 {
        return Some(format!("0.{}{digits}", "0".repeat(usize::try_from(-n).ok()?)));
    }
    exponential(digits, n - 1)
}

/// The exponent always carries its sign: 1e+21, 1e-7.
fn exponential(digits: &str, e: i32) -> Option<String> {
    let sign = if e < 0 { '-' } else { '+' };
    let (first, rest) = digits.split_at_checked(1)?;
    let e = e.unsigned_abs();
    Some(if rest.is_empty() { format!("{first}e{sign}{e}") } else { format!("{first}.{rest}e{sign}{e}") })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn canon(json: &str) -> String {
        String::from_utf8(canonicalize("PAYLOAD", json.as_bytes(), Limits::default()).unwrap()).unwrap()
    }

    fn canonicalize_default(json: &[u8]) -> Result<Vec<u8>> {
        canonicalize("PAYLOAD", json, Limits::default())
    }

    /// RFC 8785 Appendix B.
    #[test]
    fn appendix_b_numbers() {
        let table: &[(u64, &str)] = &[
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
        ];
        for &(bits, want) in table {
            let f = f64::from_bits(bits);
            assert_eq!(es_number(f).unwrap(), want, "{bits:#018x}");
            // The same value read from JSON text takes the same path.
            let text = format!("{f:e}");
            assert_eq!(canon(&text), want, "{bits:#018x} via {text}");
        }
        assert_eq!(es_number(f64::NAN), None);
        assert_eq!(es_number(f64::INFINITY), None);
    }

    #[test]
    fn number_layouts() {
        let cases = [
            ("1.0", "1"),
            ("-0", "0"),
            ("-0.0", "0"),
            ("1e21", "1e+21"),
            ("1e20", "100000000000000000000"),
            ("0.000001", "0.000001"),
            ("1e-7", "1e-7"),
            ("123456789012345678901", "123456789012345680000"),
            ("12345678901234567890", "12345678901234567000"),
            ("-9223372036854775808", "-9223372036854776000"),
            ("18446744073709551615", "18446744073709552000"),
            ("1.5e300", "1.5e+300"),
            ("4.50", "4.5"),
            ("2e-3", "0.002"),
            ("-12.75", "-12.75"),
            ("42", "42"),
            // 2^53 + 1 is not a double: it rounds to 2^53.
            ("9007199254740993", "9007199254740992"),
            // Exact ties between two shortest candidates go to the even one.
            ("249293461847598.625", "249293461847598.62"),
            ("177526529183260.125", "177526529183260.12"),
        ];
        for (input, want) in cases {
            assert_eq!(canon(input), want, "{input}");
        }
    }

    /// RFC 8785 section 3.2.3, the main example.
    #[test]
    fn rfc_example() {
        let input = r#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        let want = r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#;
        assert_eq!(canon(input), want);
    }

    /// RFC 8785 section 3.2.3, sorting by UTF-16 code units.
    #[test]
    fn rfc_key_order() {
        let input = r#"{
          "\u20ac": "Euro Sign",
          "\r": "Carriage Return",
          "\ufb33": "Hebrew Letter Dalet With Dagesh",
          "1": "One",
          "\ud83d\ude00": "Emoji: Grinning Face",
          "\u0080": "Control",
          "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        let want = concat!(
            r#"{"\r":"Carriage Return","1":"One","#,
            "\"\u{80}\":\"Control\",",
            "\"\u{f6}\":\"Latin Small Letter O With Diaeresis\",",
            "\"\u{20ac}\":\"Euro Sign\",",
            "\"\u{1f600}\":\"Emoji: Grinning Face\",",
            "\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}",
        );
        assert_eq!(canon(input), want);
    }

    #[test]
    fn string_escapes() {
        let input = r#""\u0000\u0008\u0009\u000a\u000b\u000c\u000d\u001f\u007f\u2028é\/""#;
        let want = "\"\\u0000\\b\\t\\n\\u000b\\f\\r\\u001f\u{7f}\u{2028}é/\"";
        assert_eq!(canon(input), want);
    }

    /// Deep input: no recursion here, so any depth the config allows canonicalizes.
    #[test]
    fn deep_nesting_within_the_limit() {
        let depth = 50_000;
        let deep = format!("{}0{}", "[{\"b\":1,\"a\":".repeat(depth), "}]".repeat(depth));
        let limits = Limits { max_bytes: i64::MAX, max_depth: 2 * depth as i64 };
        let out = canonicalize("PAYLOAD", deep.as_bytes(), limits).unwrap();
        let want = format!("{}0{}", "[{\"a\":".repeat(depth), ",\"b\":1}]".repeat(depth));
        assert_eq!(String::from_utf8(out).unwrap(), want);
        let tight = Limits { max_bytes: i64::MAX, max_depth: 2 * depth as i64 - 1 };
        let err = canonicalize("PAYLOAD", deep.as_bytes(), tight).unwrap_err();
        assert!(err.message.contains("json-max-depth"), "{err:?}");
    }

    #[test]
    fn structure() {
        assert_eq!(canon(" [ 1 , [ ] , { } , \"a\" ] "), r#"[1,[],{},"a"]"#);
        assert_eq!(canon(r#"{"b":{"d":1,"c":2},"a":[3,2,1]}"#), r#"{"a":[3,2,1],"b":{"c":2,"d":1}}"#);
    }

    /// RFC 8785 needs I-JSON: a duplicate name has no canonical form (it used to keep the
    /// last value, so {"a":1,"a":2} hashed as {"a":2}).
    #[test]
    fn duplicate_names_are_refused() {
        for dup in [&br#"{"a":1,"b":2,"a":3}"#[..], br#"{"a":1,"\u0061":2}"#, br#"[{"x":{"a":1,"a":1}}]"#] {
            let err = canonicalize_default(dup).unwrap_err();
            assert!(err.message.contains("duplicate member name"), "{err:?}");
        }
    }

    #[test]
    fn rejects_what_is_not_json() {
        for bad in [&b"{"[..], b"\"\\ud800\"", b"\"\\udc00x\"", b"\"\xff\"", b"1e400", b"NaN", b""] {
            let err = canonicalize_default(bad).unwrap_err();
            assert_eq!(err, json::validate("PAYLOAD", bad, Limits::default()).unwrap_err(), "the validator's words");
        }
    }

    /// A JSON tree whose object members keep the order they were generated in.
    #[derive(Debug, Clone)]
    enum J {
        Null,
        Bool(bool),
        Int(i64),
        Big(u64),
        Float(f64),
        Str(String),
        Arr(Vec<J>),
        Obj(Vec<(String, J)>),
    }

    fn tree() -> impl Strategy<Value = J> {
        let leaf = prop_oneof![
            Just(J::Null),
            any::<bool>().prop_map(J::Bool),
            any::<i64>().prop_map(J::Int),
            any::<u64>().prop_map(J::Big),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(J::Float),
            "\\PC*".prop_map(J::Str),
            any::<String>().prop_map(J::Str),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(J::Arr),
                // Unique keys: with duplicates, reordering would change which one wins.
                prop::collection::btree_map(any::<String>(), inner, 0..6).prop_map(|m| J::Obj(m.into_iter().collect())),
            ]
        })
    }

    /// Writes `j` with object members rotated by `seed` (and reversed on odd seeds),
    /// and whitespace between tokens, so only the member order and layout vary.
    fn emit(j: &J, seed: usize, out: &mut String) {
        let quote = |s: &str| serde_json::to_string(s).unwrap();
        match j {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(&b.to_string()),
            J::Int(i) => out.push_str(&i.to_string()),
            J::Big(u) => out.push_str(&u.to_string()),
            J::Float(f) => out.push_str(&serde_json::to_string(f).unwrap()),
            J::Str(s) => out.push_str(&quote(s)),
            J::Arr(items) => {
                out.push_str("[ ");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(" , ");
                    }
                    emit(item, seed, out);
                }
                out.push_str(" ]");
            }
            J::Obj(members) => {
                let mut members: Vec<_> = members.iter().collect();
                if !members.is_empty() {
                    let len = members.len();
                    members.rotate_left(seed % len);
                }
                if seed % 2 == 1 {
                    members.reverse();
                }
                out.push_str("{\n");
                for (i, (k, v)) in members.into_iter().enumerate() {
                    if i > 0 {
                        out.push_str(",\n");
                    }
                    out.push_str(&quote(k));
                    out.push_str(" : ");
                    emit(v, seed, out);
                }
                out.push_str("\n}");
            }
        }
    }

    fn text(j: &J, seed: usize) -> Vec<u8> {
        let mut s = String::new();
        emit(j, seed, &mut s);
        s.into_bytes()
    }

    proptest! {
        #[test]
        fn idempotent(j in tree(), seed in any::<usize>()) {
            let once = canonicalize_default(&text(&j, seed)).unwrap();
            let twice = canonicalize_default(&once).unwrap();
            prop_assert_eq!(once, twice);
        }

        #[test]
        fn member_order_does_not_matter(j in tree(), a in any::<usize>(), b in any::<usize>()) {
            prop_assert_eq!(
                canonicalize_default(&text(&j, a)).unwrap(),
                canonicalize_default(&text(&j, b)).unwrap()
            );
        }

        #[test]
        fn numbers_round_trip(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
            let s = es_number(f).unwrap();
            let back: f64 = s.parse().unwrap();
            prop_assert!(back == f, "{} -> {} -> {}", f, s, back);
        }
    }
}
