//! Go duration strings, as `@every` takes them (`time.ParseDuration`).

use std::time::Duration;

/// Parses a Go duration string (`300ms`, `1.5h`, `2h45m`).
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    if text.is_empty() {
        return Err("empty duration".into());
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!("duration `{text}`: expected a number at `{rest}`"));
        }
        let number: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("duration `{text}`: `{}` is not a number", &rest[..num_len]))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => {
                return Err(format!(
                    "duration `{text}`: missing unit (ns, us, ms, s, m, h)"
                ))
            }
            other => return Err(format!("duration `{text}`: unknown unit `{other}`")),
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > 1e12 {
        return Err(format!("duration `{text}` is too long"));
    }
    Ok(Duration::from_secs_f64(total))
}
