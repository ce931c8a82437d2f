//! Durations as people write them, on the command line and in files: a number and a unit
//! (`500ms`, `30s`, `5m`, `1h30m`, `2d`, as humantime reads them), or a bare number of
//! seconds.

use std::time::Duration;

/// Reads a duration.
///
/// # Errors
///
/// Text that is neither, quoted, with the forms that work.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).map_err(|_| {
            format!("{text:?} is not a duration: give a number of seconds of 0 or more")
        });
    }
    humantime::parse_duration(text).map_err(|error| {
        format!(
            "{text:?} is not a duration ({error}); write a number of seconds, or a number and \
             a unit: 500ms, 30s, 5m, 1h30m, 2d"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::parse;
    use std::time::Duration;

    #[test]
    fn units_compounds_and_bare_seconds_read_and_the_rest_is_refused() {
        let secs = |text: &str| parse(text).map(|d| d.as_secs_f64());
        assert_eq!(secs("500ms"), Ok(0.5));
        assert_eq!(secs("1h30m"), Ok(5400.0));
        assert_eq!(secs(" 2d "), Ok(172_800.0));
        assert_eq!(secs("90"), Ok(90.0));
        assert_eq!(parse("1.5"), Ok(Duration::from_millis(1500)));
        for bad in ["soon", "", "-3", "5 parsecs"] {
            let error = parse(bad).unwrap_err();
            assert!(error.contains("is not a duration"), "{bad}: {error}");
        }
    }
}
