//! StatsD / DogStatsD lines (docs/reference.md §5): tables of good and bad lines, datagrams with several
//! lines, and properties (no panic on any bytes; one result per non-blank line).
#![allow(clippy::unwrap_used)]

use perfmon_protocol::custom::Validator;
use perfmon_protocol::statsd::{parse_datagram, parse_datagram_with, Kind, Line, LineError, Unsupported, MAX_TAGS};
use proptest::prelude::*;

fn one(line: &str) -> Result<Line<'_>, LineError> {
    let mut all: Vec<_> = parse_datagram(line.as_bytes()).collect();
    assert_eq!(all.len(), 1, "{line:?}: {all:?}");
    all.remove(0)
}

fn ok(line: &str) -> Line<'_> {
    one(line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
}

fn tags<'a>(l: &Line<'a>) -> Vec<(&'a str, &'a str)> {
    l.dimensions().collect()
}

#[test]
fn types_units_and_values() {
    // (line, name, kind, unit, values)
    let rows: &[(&str, &str, Kind, &str, &[f64])] = &[
        ("page.views:1|c", "page.views", Kind::Counter, "None", &[1.0]),
        ("q:12.5|ms", "q", Kind::Distribution, "Milliseconds", &[12.5]),
        ("h:3|h", "h", Kind::Distribution, "None", &[3.0]),
        ("d:0.25|d", "d", Kind::Distribution, "None", &[0.25]),
        ("temp:-3|g", "temp", Kind::Gauge, "None", &[-3.0]),
        ("temp:+5|g", "temp", Kind::Gauge, "None", &[5.0]),
        ("multi:1:2:3.5|d", "multi", Kind::Distribution, "None", &[1.0, 2.0, 3.5]),
        ("multi:1:2|c", "multi", Kind::Counter, "None", &[1.0, 2.0]),
        ("exp:1e3|ms", "exp", Kind::Distribution, "Milliseconds", &[1000.0]),
        ("with space:1|c", "with space", Kind::Counter, "None", &[1.0]),
        ("  padded:1|c  ", "padded", Kind::Counter, "None", &[1.0]),
        ("a:1|c|", "a", Kind::Counter, "None", &[1.0]),
        ("unicodé:1|c", "unicodé", Kind::Counter, "None", &[1.0]),
    ];
    for (line, name, kind, unit, values) in rows {
        let l = ok(line);
        assert_eq!((l.name, l.kind, l.unit), (*name, *kind, *unit), "{line}");
        assert_eq!(l.values().collect::<Vec<_>>(), *values, "{line}");
        assert_eq!((l.sample_rate, l.timestamp_ms, l.skipped_tags), (1.0, None, 0), "{line}");
    }
}

#[test]
fn sample_rates_scale_counters_and_weight_distributions() {
    let l = ok("hits:3|c|@0.1");
    assert_eq!(l.sample_rate, 0.1);
    let s: Vec<_> = l.samples().collect();
    assert_eq!(s.len(), 1);
    assert!((s[0].0 - 30.0).abs() < 1e-9 && s[0].1 == 1.0, "{s:?}");
    assert_eq!(ok("lat:4:8|ms|@0.25").samples().collect::<Vec<_>>(), [(4.0, 4.0), (8.0, 4.0)]);
    assert_eq!(ok("g:7|g|@0.5").samples().collect::<Vec<_>>(), [(7.0, 1.0)]);
    assert_eq!(ok("c:2|c|@1").samples().collect::<Vec<_>>(), [(2.0, 1.0)]);
}

#[test]
fn tags_become_dimensions() {
    let l = ok("a:1|c|#env:prod,service:chat");
    assert_eq!(tags(&l), [("env", "prod"), ("service", "chat")]);
    assert_eq!(l.skipped_tags, 0);
    // split at the first ':'
    assert_eq!(tags(&ok("a:1|c|#url:http://x")), [("url", "http://x")]);
    // tags without a value, invalid ones and repeats are skipped and counted; empty ones ignored
    let l = ok("a:1|c|#env:prod,bare,empty:,:colon:x,env:dev,,nonascii:é,ok:1");
    assert_eq!(tags(&l), [("env", "prod"), ("ok", "1")]);
    assert_eq!(l.skipped_tags, 5);
    // sections in any order, with DogStatsD's container and timestamp, and unknown ones
    let l = ok("a:1|d|#t:1|@0.5|c:abc123|T1767225600|e:it-123|x");
    assert_eq!(tags(&l), [("t", "1")]);
    assert_eq!((l.sample_rate, l.timestamp_ms), (0.5, Some(1_767_225_600_000)));
    assert!(tags(&ok("a:1|c|#")).is_empty());
}

#[test]
fn bad_lines() {
    let rows: &[(&[u8], LineError)] = &[
        (b"a", LineError::MissingValue),
        (b"a|c", LineError::MissingValue),
        (b"a:1", LineError::MissingType),
        (b":1|c", LineError::BadName),
        (b"a:|c", LineError::BadValue),
        (b"a:x|c", LineError::BadValue),
        (b"a:1:|d", LineError::BadValue),
        (b"a:1::2|d", LineError::BadValue),
        (b"a:NaN|g", LineError::BadValue),
        (b"a:nan|g", LineError::BadValue),
        (b"a:inf|d", LineError::BadValue),
        (b"a:-infinity|d", LineError::BadValue),
        (b"a:1e400|d", LineError::BadValue),
        (b"a:1e109|d", LineError::BadValue),
        (b"a:0x10|c", LineError::BadValue),
        (b"a:1|x", LineError::UnknownType),
        (b"a:1|", LineError::UnknownType),
        (b"a:1|C", LineError::UnknownType),
        (b"a:1|s", LineError::Unsupported(Unsupported::Set)),
        (b"_sc|db|0|#env:prod", LineError::Unsupported(Unsupported::ServiceCheck)),
        (b"_e{5,4}:title|text", LineError::Unsupported(Unsupported::Event)),
        (b"a:1|c|@0", LineError::BadSampleRate),
        (b"a:1|c|@-0.5", LineError::BadSampleRate),
        (b"a:1|c|@1.5", LineError::BadSampleRate),
        (b"a:1|c|@x", LineError::BadSampleRate),
        (b"a:1|c|@NaN", LineError::BadSampleRate),
        (b"a:1|c|@", LineError::BadSampleRate),
        (b"a:1|c|@0.5|@0.5", LineError::DuplicateSection),
        (b"a:1|c|#a:b|#c:d", LineError::DuplicateSection),
        (b"a:1|c|Tnow", LineError::BadTimestamp),
        (b"a:1|c|T", LineError::BadTimestamp),
        (b"a:1|c|T-5", LineError::BadTimestamp),
        (b"a:1|c|T99999999999999999999", LineError::BadTimestamp),
        (b"a\xff:1|c", LineError::InvalidUtf8),
        (b"\x00\x01\x02\x03", LineError::MissingValue),
        (b"a\x00b:1|c", LineError::BadName),
        (b"\x89PNG\r\n", LineError::InvalidUtf8),
    ];
    for (line, expected) in rows {
        let got: Vec<_> = parse_datagram(line).collect();
        assert_eq!(got, vec![Err(*expected)], "{}", String::from_utf8_lossy(line));
        assert!(expected.reason().starts_with("statsd_"));
    }
    let long = format!("{}:1|c", "n".repeat(256));
    assert_eq!(one(&long), Err(LineError::BadName));
    assert!(one(&format!("{}:1|c", "n".repeat(255))).is_ok());
}

#[test]
fn dimension_limits() {
    let tags_n = |n: usize| (0..n).map(|i| format!("t{i}:v")).collect::<Vec<_>>().join(",");
    let line30 = format!("a:1|c|#{}", tags_n(30));
    let line31 = format!("a:1|c|#{}", tags_n(31));
    assert_eq!(tags(&ok(&line30)).len(), 30);
    assert_eq!(one(&line31), Err(LineError::TooManyDimensions));
    // with the defaults: FunctionName + 30 = 31; an override of a default does not add one
    let v = Validator::new(["FunctionName"]);
    let with = |s: &str| parse_datagram_with(s.as_bytes(), &v).next().unwrap().map(|l| l.dimensions().count());
    assert_eq!(with(&line30), Err(LineError::TooManyDimensions));
    assert_eq!(with(&format!("a:1|c|#{}", tags_n(29))), Ok(29));
    assert_eq!(with(&format!("a:1|c|#FunctionName:x,{}", tags_n(29))), Ok(30));
    // invalid tags do not count against 30, but more than MAX_TAGS of any kind reject the line
    let bare = (0..MAX_TAGS - 1).map(|i| format!("b{i}")).collect::<Vec<_>>().join(",");
    let line = format!("a:1|c|#{bare},x:y");
    let l = ok(&line);
    assert_eq!((tags(&l).len(), l.skipped_tags), (1, MAX_TAGS - 1));
    assert_eq!(one(&format!("a:1|c|#{bare},x:y,z:w")), Err(LineError::TooManyDimensions));
}

#[test]
fn datagrams_with_several_lines() {
    let got: Vec<_> = parse_datagram(b"a:1|c\nb:2|g\r\n\nbad\n\r\nc:3|ms|#k:v\n").collect();
    assert_eq!(got.len(), 4);
    assert_eq!(got[0].as_ref().unwrap().name, "a");
    assert_eq!(got[1].as_ref().unwrap().kind, Kind::Gauge);
    assert_eq!(got[2], Err(LineError::MissingValue));
    let c = got[3].as_ref().unwrap();
    assert_eq!((c.name, c.unit), ("c", "Milliseconds"));
    assert_eq!(tags(c), [("k", "v")]);
    // a bad line, even binary, never stops the others
    let got: Vec<_> = parse_datagram(b"\xff\xfe\n_sc|x|0\nok:1|c").collect();
    assert_eq!(got[0], Err(LineError::InvalidUtf8));
    assert_eq!(got[1], Err(LineError::Unsupported(Unsupported::ServiceCheck)));
    assert!(got[2].is_ok());
    assert_eq!(parse_datagram(b"").count(), 0);
    assert_eq!(parse_datagram(b"\n\r\n  \n").count(), 0);
}

#[test]
fn lines_borrow_from_the_datagram() {
    let datagram = b"borrowed:1|c|#k:v".to_vec();
    let l = parse_datagram(&datagram).next().unwrap().unwrap();
    assert!(std::ptr::eq(l.name.as_ptr(), datagram.as_ptr()));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_and_give_one_result_per_nonblank_line(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let v = Validator::new(["FunctionName", "Env"]);
        let nonblank = bytes.split(|&b| b == b'\n').filter(|l| !l.trim_ascii().is_empty()).count();
        let results: Vec<_> = parse_datagram_with(&bytes, &v).collect();
        prop_assert_eq!(results.len(), nonblank);
        for line in results.into_iter().flatten() {
            prop_assert!(line.values().all(f64::is_finite));
            prop_assert!(line.samples().count() >= 1);
            prop_assert!(line.dimensions().count() <= 30);
        }
    }

    #[test]
    fn statsd_like_text_never_panics(text in r"[a-z:|@#,.0-9Tc\n\-]{0,300}") {
        for line in parse_datagram(text.as_bytes()).flatten() {
            let names: Vec<_> = line.dimensions().map(|(n, _)| n).collect();
            let mut unique = names.clone();
            unique.sort_unstable();
            unique.dedup();
            prop_assert_eq!(unique.len(), names.len());
        }
    }

    #[test]
    fn well_formed_lines_round_trip(
        name in "[a-zA-Z_][a-zA-Z0-9_.]{0,20}",
        values in prop::collection::vec(-1e6f64..1e6, 1..5),
        ty in prop::sample::select(vec!["c", "g", "ms", "h", "d"]),
        rate in 0.01f64..=1.0,
        tags in prop::collection::btree_map("[a-z]{1,5}", "[a-z0-9]{1,5}", 0..10),
    ) {
        let vals = values.iter().map(f64::to_string).collect::<Vec<_>>().join(":");
        let tag_s = tags.iter().map(|(k, v)| format!("{k}:{v}")).collect::<Vec<_>>().join(",");
        let line = format!("{name}:{vals}|{ty}|@{rate}|#{tag_s}\r\n");
        let l = parse_datagram(line.as_bytes()).next().unwrap().unwrap();
        prop_assert_eq!(l.name, name.as_str());
        prop_assert_eq!(l.values().collect::<Vec<_>>(), values);
        prop_assert_eq!(l.sample_rate, rate);
        let got: Vec<_> = l.dimensions().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        prop_assert_eq!(got, tags.into_iter().collect::<Vec<_>>());
    }
}
