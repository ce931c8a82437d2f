//! [`RateLimit`]: how often tasks of one name may start, across every worker on a store
//! (a token bucket the store keeps, so that all workers draw from one).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// At most `rate` starts a second on average, with bursts of up to `burst` after a quiet
/// spell: a token bucket that holds `burst` tokens and gains `rate` a second, one token
/// per start.
///
/// # Examples
///
/// ```
/// use plait_queue::RateLimit;
///
/// let limit: RateLimit = "600/m".parse()?;
/// assert_eq!(limit, RateLimit::per_second(10.0));
/// assert_eq!(limit.burst_size(), 10);
/// assert_eq!(RateLimit::per_second(2.0).burst(1).burst_size(), 1);
/// # Ok::<(), String>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    per_second: f64,
    burst: u32,
}

impl RateLimit {
    /// `n` starts a second (a fraction for less than one); bursts of `n`, rounded up.
    #[must_use]
    pub fn per_second(n: f64) -> Self {
        let per_second = if n.is_finite() && n > 0.0 {
            n
        } else {
            f64::MIN_POSITIVE
        };
        RateLimit {
            per_second,
            burst: per_second.ceil().clamp(1.0, f64::from(u32::MAX)) as u32,
        }
    }

    /// `n` starts a minute.
    #[must_use]
    pub fn per_minute(n: f64) -> Self {
        RateLimit::per_second(n / 60.0)
    }

    /// At most `n` starts at once after a quiet spell (at least 1).
    #[must_use]
    pub fn burst(mut self, n: u32) -> Self {
        self.burst = n.max(1);
        self
    }

    /// Starts a second, on average.
    #[must_use]
    pub fn rate(&self) -> f64 {
        self.per_second
    }

    /// The most starts at once.
    #[must_use]
    pub fn burst_size(&self) -> u32 {
        self.burst
    }

    /// How long a start that found no token waits for one, if the bucket held `tokens`.
    pub(crate) fn wait_for_token(&self, tokens: f64) -> Duration {
        Duration::from_secs_f64(((1.0 - tokens).max(0.0) / self.per_second).min(86_400.0))
    }
}

impl FromStr for RateLimit {
    type Err = String;

    /// `N/s`, `N/m` or `N/h` (N may be a fraction).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "{text:?} is not a rate limit: write N/s, N/m or N/h (say 10/s, or 0.5/s for \
                 one start every two seconds)"
            )
        };
        let (n, per) = text.trim().split_once('/').ok_or_else(bad)?;
        let n: f64 = n.trim().parse().map_err(|_| bad())?;
        if !n.is_finite() || n <= 0.0 {
            return Err(bad());
        }
        let seconds = match per.trim() {
            "s" | "sec" | "second" => 1.0,
            "m" | "min" | "minute" => 60.0,
            "h" | "hour" => 3600.0,
            _ => return Err(bad()),
        };
        Ok(RateLimit::per_second(n / seconds))
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s (bursts of {})", self.per_second, self.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_in_every_unit_and_bad_ones_say_how_to_write_them() {
        assert_eq!("10/s".parse::<RateLimit>().unwrap().rate(), 10.0);
        assert_eq!("120/m".parse::<RateLimit>().unwrap().rate(), 2.0);
        assert_eq!("3600/h".parse::<RateLimit>().unwrap().rate(), 1.0);
        assert_eq!("0.5/s".parse::<RateLimit>().unwrap().burst_size(), 1);
        for bad in ["10", "ten/s", "10/d", "0/s", "-1/s"] {
            let error = bad.parse::<RateLimit>().unwrap_err();
            assert!(error.contains("N/s"), "{error}");
        }
        let limit = RateLimit::per_second(4.0);
        assert_eq!(limit.wait_for_token(0.0), Duration::from_millis(250));
        assert_eq!(limit.wait_for_token(0.5), Duration::from_millis(125));
    }
}
