//! How `main` reports an error that stops it: one line, each cause once,
//! and the full form (with a backtrace, if one was captured) only when
//! asked for.
//!
//! Returning the error from `main` would print anyhow's `Debug` form, whose
//! "Caused by" list repeats what the message already says and which carries
//! a 31-frame backtrace whenever `RUST_BACKTRACE=1` is set, as it often is
//! on developers' machines.

/// The messages of an error and its causes, outermost first, joined with
/// `: `; a cause whose text the line already holds is left out (an error
/// that quotes its source, such as "cannot listen on ADDR: address in use",
/// would otherwise say it twice).
pub fn one_line<I, S>(causes: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut line = String::new();
    for cause in causes {
        let cause = cause.as_ref().trim();
        if cause.is_empty() || line.contains(cause) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(cause);
    }
    line
}

/// Whether the full error is wanted: `--debug`, or a `RUST_LOG` that asks
/// for debug or trace output.
pub fn wants_detail(debug: bool, rust_log: Option<&str>) -> bool {
    debug
        || rust_log.is_some_and(|v| {
            let v = v.to_ascii_lowercase();
            v.contains("debug") || v.contains("trace")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_already_said_are_left_out() {
        let line = one_line([
            "server.bind: cannot listen on 127.0.0.1:8088: Address in use (os error 98)",
            "Address in use (os error 98)",
        ]);
        assert_eq!(
            line,
            "server.bind: cannot listen on 127.0.0.1:8088: Address in use (os error 98)"
        );
        assert_eq!(one_line(["a", "b", "", "c"]), "a: b: c");
    }

    #[test]
    fn detail_only_when_asked() {
        assert!(!wants_detail(false, None));
        assert!(!wants_detail(false, Some("info")));
        assert!(wants_detail(false, Some("healthmon=DEBUG")));
        assert!(wants_detail(false, Some("trace")));
        assert!(wants_detail(true, None));
    }
}
