//! Counts the outcome of every spec in a JUnit report written by ginkgo.

use std::fmt;

/// Outcome counts of one report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Specs that ran and passed.
    pub passed: u32,
    /// Specs that failed or errored.
    pub failed: u32,
    /// Specs skipped or pending.
    pub skipped: u32,
}

impl Tally {
    /// Adds another tally to this one.
    pub fn add(&mut self, other: Tally) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.skipped += other.skipped;
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )
    }
}

/// A failed spec's name, for the summary.
pub type FailedSpec = String;

/// Counts `<testcase>` elements by their first child element: `<failure>` or
/// `<error>` is a failure, `<skipped>` a skip, anything else a pass.
pub fn tally(xml: &str) -> (Tally, Vec<FailedSpec>) {
    let mut t = Tally::default();
    let mut failed = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find("<testcase") {
        rest = &rest[start + "<testcase".len()..];
        let Some(tag_end) = rest.find('>') else { break };
        let tag = &rest[..tag_end];
        let name = attribute(tag, "name").unwrap_or_default();
        let body = if tag.ends_with('/') {
            ""
        } else {
            let end = rest.find("</testcase>").unwrap_or(rest.len());
            &rest[tag_end + 1..end]
        };
        if body.contains("<failure") || body.contains("<error") {
            t.failed += 1;
            failed.push(unescape(&name));
        } else if body.contains("<skipped") {
            t.skipped += 1;
        } else {
            t.passed += 1;
        }
    }
    (t, failed)
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    let end = tag[start..].find('"')? + start;
    Some(tag[start..end].to_string())
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_outcome_and_names_failures() {
        let xml = r#"<testsuites><testsuite name="CSI">
          <testcase name="a passes" time="0.1"></testcase>
          <testcase name="b &quot;fails&quot;" time="0.1"><failure message="x">boom</failure></testcase>
          <testcase name="c skipped" time="0"><skipped message="skipped"></skipped></testcase>
          <testcase name="d errors"><error message="y"/></testcase>
          <testcase name="e passes"/>
        </testsuite></testsuites>"#;
        let (t, failed) = tally(xml);
        assert_eq!(
            t,
            Tally {
                passed: 2,
                failed: 2,
                skipped: 1
            }
        );
        assert_eq!(
            failed,
            vec!["b \"fails\"".to_string(), "d errors".to_string()]
        );
        assert_eq!(t.to_string(), "2 passed, 2 failed, 1 skipped");
    }
}
