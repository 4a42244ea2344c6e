//! The text the Python persister stores for a dimension value that is not a string: Python's
//! `str()` of what its JSON parser returned (`True`, `False`, `42`, `1.5`, `1e+16`, `1e-05`),
//! written into a stack buffer so the hot path stays allocation-free.

use crate::decode::DimValue;

/// Room for the longest text: `-1.2345678901234567e-308` (24 bytes), `-9223372036854775808`.
pub(super) type Buf = [u8; 32];

/// The dimension value's text: the string itself, or Python's `str()` of the number/boolean.
pub(super) fn dim_text<'b>(v: DimValue<'b>, buf: &'b mut Buf) -> &'b str {
    let len = match v {
        DimValue::Str(s) => return s,
        DimValue::Bool(true) => return "True",
        DimValue::Bool(false) => return "False",
        DimValue::Int(i) => copy(buf, itoa::Buffer::new().format(i)),
        DimValue::UInt(u) => copy(buf, itoa::Buffer::new().format(u)),
        DimValue::Float(f) => python_repr(f, buf),
    };
    // Only ASCII digits, signs, `.`, `e`, `inf` and `nan` are ever written.
    std::str::from_utf8(&buf[..len]).unwrap_or("")
}

fn copy(buf: &mut Buf, s: &str) -> usize {
    buf[..s.len()].copy_from_slice(s.as_bytes());
    s.len()
}

/// Python's `repr(float)`: the shortest digits that round-trip (as ryu finds them), in fixed
/// notation with at least one fractional digit when the decimal exponent is in (-4, 16],
/// otherwise `d.ddde±XX` with at least two exponent digits.
fn python_repr(f: f64, buf: &mut Buf) -> usize {
    if f.is_nan() {
        return copy(buf, "nan");
    }
    if f.is_infinite() {
        return copy(buf, if f > 0.0 { "inf" } else { "-inf" });
    }
    let mut ryu_buf = ryu::Buffer::new();
    let s = ryu_buf.format_finite(f).as_bytes();
    let (neg, s) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    let (mantissa, exp) = match s.iter().position(|&b| b == b'e') {
        Some(e) => (
            &s[..e],
            std::str::from_utf8(&s[e + 1..])
                .ok()
                .and_then(|x| x.parse::<i32>().ok())
                .unwrap_or(0),
        ),
        None => (s, 0),
    };
    // The significant digits (at most 17) and where the decimal point goes: 0.DIGITS × 10^decpt.
    let mut digits = [0u8; 24];
    let (mut n, mut int_len, mut seen_point, mut leading) = (0usize, 0i32, false, 0i32);
    for &b in mantissa {
        if b == b'.' {
            seen_point = true;
            continue;
        }
        if !seen_point {
            int_len += 1;
        }
        if n == 0 && b == b'0' {
            leading += 1;
            continue;
        }
        if n < digits.len() {
            digits[n] = b;
            n += 1;
        }
    }
    while n > 0 && digits[n - 1] == b'0' {
        n -= 1;
    }
    let mut len = 0;
    let mut put = |buf: &mut Buf, bytes: &[u8]| {
        buf[len..len + bytes.len()].copy_from_slice(bytes);
        len += bytes.len();
    };
    if neg {
        put(buf, b"-");
    }
    if n == 0 {
        put(buf, b"0.0");
        return len;
    }
    let decpt = int_len + exp - leading;
    let digits = &digits[..n];
    if decpt > -4 && decpt <= 16 {
        if decpt <= 0 {
            put(buf, b"0.");
            for _ in 0..-decpt {
                put(buf, b"0");
            }
            put(buf, digits);
        } else if decpt as usize >= n {
            put(buf, digits);
            for _ in 0..decpt as usize - n {
                put(buf, b"0");
            }
            put(buf, b".0");
        } else {
            put(buf, &digits[..decpt as usize]);
            put(buf, b".");
            put(buf, &digits[decpt as usize..]);
        }
    } else {
        put(buf, &digits[..1]);
        if n > 1 {
            put(buf, b".");
            put(buf, &digits[1..]);
        }
        let e = decpt - 1;
        put(buf, if e < 0 { b"e-" } else { b"e+" });
        let e = e.unsigned_abs();
        if e < 10 {
            put(buf, b"0");
        }
        put(buf, itoa::Buffer::new().format(e).as_bytes());
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repr(f: f64) -> String {
        let mut buf = [0; 32];
        dim_text(DimValue::Float(f), &mut buf).to_owned()
    }

    #[test]
    fn floats_are_written_as_python_repr_writes_them() {
        // Expected values printed by CPython 3.11's repr().
        for (f, want) in [
            (1.5, "1.5"),
            (2.0, "2.0"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (100.0, "100.0"),
            (1e15, "1000000000000000.0"),
            (9999999999999998.0, "9999999999999998.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1e20, "1e+20"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (0.0001, "0.0001"),
            (0.00012345, "0.00012345"),
            (1e-5, "1e-05"),
            (-1.25e-7, "-1.25e-07"),
            (5e-324, "5e-324"),
            (0.1, "0.1"),
            (123456.789, "123456.789"),
            (0.30000000000000004, "0.30000000000000004"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
        ] {
            assert_eq!(repr(f), want, "{f:e}");
        }
    }

    #[test]
    fn integers_and_booleans_are_written_as_python_str_writes_them() {
        let mut buf = [0; 32];
        assert_eq!(
            dim_text(DimValue::Int(i64::MIN), &mut buf),
            "-9223372036854775808"
        );
        assert_eq!(
            dim_text(DimValue::UInt(u64::MAX), &mut buf),
            "18446744073709551615"
        );
        assert_eq!(dim_text(DimValue::Bool(true), &mut buf), "True");
        assert_eq!(dim_text(DimValue::Bool(false), &mut buf), "False");
        assert_eq!(dim_text(DimValue::Str("x"), &mut buf), "x");
    }
}
