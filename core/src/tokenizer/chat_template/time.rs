//! `strftime_now(format)`: the date templates put in system prompts (Llama 3: "Today Date:
//! 26 Jul 2024"). Times are UTC: wisp-core has no time-zone database.

use minijinja::{Error, ErrorKind};

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// The template function: formats `fixed` seconds, or the current time when `None`.
pub(super) fn strftime_now_function(
    fixed: Option<i64>,
) -> impl Fn(String) -> Result<String, Error> + Send + Sync + 'static {
    move |format: String| {
        let seconds = fixed.or_else(current_unix_time).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidOperation,
                "strftime_now: no clock on this platform; call ChatTemplate::set_unix_time first",
            )
        })?;
        strftime(&format, seconds)
            .map_err(|message| Error::new(ErrorKind::InvalidOperation, message))
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn current_unix_time() -> Option<i64> {
    let elapsed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    i64::try_from(elapsed.as_secs()).ok()
}

/// `SystemTime::now()` panics on wasm32-unknown-unknown.
#[cfg(target_arch = "wasm32")]
fn current_unix_time() -> Option<i64> {
    None
}

/// The calendar date of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn day_of_year(year: i64, month: u32, day: u32) -> u32 {
    const BEFORE: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    BEFORE[(month - 1) as usize] + day + u32::from(month > 2 && is_leap(year))
}

/// Python's `strftime` for the directives chat templates use, including glibc's `%-d`
/// (no padding). Any other directive is an error naming it.
pub(super) fn strftime(format: &str, seconds: i64) -> Result<String, String> {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let weekday = (days + 4).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    let month_name = MONTHS[(month - 1) as usize];
    let hour12 = if hour % 12 == 0 { 12 } else { hour % 12 };

    let mut out = String::with_capacity(format.len() + 16);
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = chars
            .next()
            .ok_or("strftime_now: the format ends with a lone %")?;
        let pad = spec != '-';
        if !pad {
            spec = chars
                .next()
                .ok_or("strftime_now: the format ends with %-")?;
        }
        let num = |v: i64, width: usize| {
            if pad {
                format!("{v:0width$}")
            } else {
                v.to_string()
            }
        };
        let text = match spec {
            'Y' => year.to_string(),
            'y' => num(year.rem_euclid(100), 2),
            'm' => num(i64::from(month), 2),
            'd' => num(i64::from(day), 2),
            'e' => format!("{day:>2}"),
            'j' => num(i64::from(day_of_year(year, month, day)), 3),
            'H' => num(hour, 2),
            'I' => num(hour12, 2),
            'M' => num(minute, 2),
            'S' => num(second, 2),
            'p' => (if hour < 12 { "AM" } else { "PM" }).to_string(),
            'B' => month_name.to_string(),
            'b' | 'h' => month_name[..3].to_string(),
            'A' => WEEKDAYS[weekday].to_string(),
            'a' => WEEKDAYS[weekday][..3].to_string(),
            'w' => weekday.to_string(),
            'F' => format!("{year:04}-{month:02}-{day:02}"),
            'T' => format!("{hour:02}:{minute:02}:{second:02}"),
            'D' => format!("{month:02}/{day:02}/{:02}", year.rem_euclid(100)),
            'Z' => "UTC".to_string(),
            'z' => "+0000".to_string(),
            '%' => "%".to_string(),
            other => return Err(format!("strftime_now: unsupported directive %{other}")),
        };
        out.push_str(&text);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_dates() {
        // 2024-07-26 13:05:09 UTC, a Friday.
        let t = 1_721_999_109;
        assert_eq!(strftime("%d %b %Y", t).unwrap(), "26 Jul 2024");
        assert_eq!(
            strftime("%B %-d, %Y %A %H:%M:%S %I%p %j", t).unwrap(),
            "July 26, 2024 Friday 13:05:09 01PM 208"
        );
        assert_eq!(strftime("%F %T %%", 0).unwrap(), "1970-01-01 00:00:00 %");
        assert_eq!(
            strftime("%Y-%m-%d %a", 951_782_400).unwrap(),
            "2000-02-29 Tue"
        );
        assert_eq!(strftime("%Y-%m-%d", -86_400).unwrap(), "1969-12-31");
    }

    #[test]
    fn unknown_directive_is_named() {
        assert!(strftime("%Q", 0).unwrap_err().contains("%Q"));
        assert!(strftime("50%", 0).is_err());
    }
}
